"""The Ray backend on a real two-node Ray cluster, in a private network namespace (``-m ray``).

Ray listens on every address the machine has, so its tests (``ray_cluster_tests.py``: the backend
contract, placement by custom resource and node label, sizes per backend, a node removed in the
middle of a task, kill) run in a pytest of their own under ``unshare --net``, whose network is only
``lo``; the cluster, the control plane and its workers are all in there. Where ``unshare`` is not
permitted, the test skips and says why.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

HERE = Path(__file__).parent
INNER = HERE / "ray_cluster_tests.py"
TIMEOUT = 900


def _why_not() -> str | None:
    if importlib.util.find_spec("ray") is None:
        return "ray is not installed (pip install 'taskyard[ray]')"
    missing = [tool for tool in ("unshare", "ip") if shutil.which(tool) is None]
    if missing:
        return f"missing tools: {', '.join(missing)}"
    probe = subprocess.run(["unshare", "--net", "ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"a private network namespace is not permitted here: {probe.stderr.strip() or probe.returncode}"
    return None


def test_the_ray_backend_on_a_two_node_cluster_in_a_private_network(tmp_path):
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    source = str(Path(__import__("taskyard").__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    pytest_args = [sys.executable, "-m", "pytest", str(INNER), "-p", "no:cacheprovider", "-v", "-x",
                   "--basetemp", str(tmp_path / "inner"), "-W", "ignore::DeprecationWarning"]
    script = 'ip link set lo up && exec "$@"'
    run = subprocess.run(["unshare", "--net", "sh", "-c", script, "sh", *pytest_args], env=env, cwd=HERE.parents[1],
                         capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    summary = run.stdout[-20000:]
    print(summary)
    assert run.returncode == 0, f"the Ray tests failed ({run.returncode}):\n{summary}\n{run.stderr[-5000:]}"
