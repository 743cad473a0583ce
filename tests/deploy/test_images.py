"""deploy/Dockerfile: its stages are the images deploy/kubernetes runs, and its agent recipe gives a working agent.

No container engine runs here, so the agent image's own step (``pip install --no-deps --target``)
is run as written into a folder, and the agent started from it by an interpreter that sees nothing
but the standard library and that folder, as in a worker image without taskyard.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from taskyard.backends.kubernetes import manifests

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "deploy" / "Dockerfile").read_text()


def stage(name: str) -> str:
    """The lines of one build stage."""
    found = re.search(rf"^FROM \S+ AS {name}\n(.*?)(?=^FROM |\Z)", DOCKERFILE, re.M | re.S)
    assert found, f"deploy/Dockerfile has no stage {name!r}"
    return found.group(1)


def test_the_stages_are_the_server_a_worker_and_the_agent() -> None:
    assert "taskyard[kubernetes,postgres]" in stage("server") and '"taskyard", "server"' in stage("server")
    assert "USER 10001" in stage("server")  # the Deployment's runAsUser
    assert "--no-deps" in stage("worker")
    assert f"--no-deps --target {manifests.AGENT_DIR} " in stage("agent")


def test_the_agent_installed_without_dependencies_starts_on_the_standard_library_alone(tmp_path) -> None:
    source, target = tmp_path / "src", tmp_path / "opt-taskyard"  # the source stage: what the Dockerfile copies
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(source)]
    subprocess.run(pip, check=True, cwd=tmp_path, timeout=300)
    probe = "import taskyard.agent.main, taskyard.agent.runner, taskyard.agent.protocol; print('agent ok')"
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    # -S: no site-packages, so no third-party package can be found; -E is not used, PYTHONPATH is the folder
    run = subprocess.run([sys.executable, "-S", "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "agent ok"
    started = subprocess.run([sys.executable, "-S", "-m", "taskyard.agent"], env=env, capture_output=True,
                             text=True, timeout=60, cwd=tmp_path)
    assert "ModuleNotFoundError" not in started.stderr, started.stderr
