"""ray: the same measurements against a local Ray cluster through Ray Jobs, next to taskyard's.

Ray binds to the machine's routable address even when told 127.0.0.1, so the whole Ray side runs
in a child (``bench/ray_child.py``) inside private namespaces: ``unshare --net --pid --fork
--kill-child --mount-proc``. Its network has only ``lo`` (brought up first), so nothing leaves the
machine; its process namespace holds only the processes it starts, so ``ray stop`` in there stops
only those, and when the child ends (or is killed on timeout) the kernel ends whatever is left.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from contextlib import suppress
from dataclasses import asdict
from pathlib import Path

from .figures import BenchError, Figure, single, spread
from .harness import REPO, progress
from .plan import Plan

TIMEOUT = 1800.0
NAMESPACES = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
SCRIPT = 'ip link set lo up && "$0" -m {module} "$@"; rc=$?; exit $rc'

# Ray's figure -> the taskyard figures it is compared with (taskyard ÷ Ray).
PAIRS = {
    "e2e": ["hello run_task, warm pool", "hello run_task, cold worker"],
    "throughput": ["hello tasks at once"],
    "log latency": ["log latency"],
    "kill running": ["kill a running task"],
    "kill queued": ["kill a queued task"],
}
NAMES = {
    "e2e": ("Ray Jobs: hello job, submit → SUCCEEDED + logs", "s"),
    "throughput": ("Ray Jobs: {n} hello jobs at once, 1 CPU each, {cpus} CPUs", "jobs/s"),
    "log latency": ("Ray Jobs: log latency, tail_job_logs follower", "s"),
    "kill running": ("Ray Jobs: stop a running job (exits on SIGTERM)", "s"),
    "kill queued": ("Ray Jobs: stop a pending job (CPUs held by sleepers)", "s"),
}


def skip_reason(wanted: bool | None, smoke: bool) -> str | None:
    """Why the Ray side cannot or should not run, or None to run it."""
    if wanted is False:
        return "--no-ray"
    if wanted is None and smoke:
        return "--smoke runs no Ray (add --ray to force it)"
    if importlib.util.find_spec("ray") is None:
        return 'ray is not installed (.venv/bin/pip install "ray[default]")'
    if _ray_cli() is None:
        return "the ray command is not installed next to this Python"
    if os.geteuid() != 0:
        return "a private network namespace (unshare) needs root"
    missing = [tool for tool in ("unshare", "ip", "bash") if shutil.which(tool) is None]
    if missing:
        return f"missing tools: {', '.join(missing)}"
    return None


def _ray_cli() -> str | None:
    local = Path(sys.executable).parent / "ray"
    return str(local) if local.exists() else shutil.which("ray")


def run(plan: Plan, taskyard_figures: list[Figure]) -> tuple[list[Figure], list[str]]:
    """Ray's figures (with taskyard ÷ Ray ratios) and what could not be measured because it failed."""
    return _figures(child_results("bench.ray_child", plan, "the Ray side"), taskyard_figures)


def child_results(module: str, plan: Plan, side: str) -> dict:
    """Run ``module`` inside the private namespaces, with a Ray cluster of its own; the results it wrote."""
    work = Path(tempfile.mkdtemp(prefix="tyray-"))
    try:
        out = work / "results.json"
        options = {"--out": out, "--plan": json.dumps(asdict(plan)), "--ray-cli": _ray_cli(), "--temp-dir": work / "t"}
        args = [str(item) for pair in options.items() for item in pair]
        _run_child([*NAMESPACES, "bash", "-c", SCRIPT.format(module=module), sys.executable, *args])
        if not out.exists():
            raise BenchError(f"{side} wrote no results (see its output above)")
        return json.loads(out.read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_child(command: list[str]) -> None:
    child = subprocess.Popen(command, cwd=REPO, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        code = child.wait(timeout=TIMEOUT)
    except BaseException:
        with suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)  # --kill-child then ends the namespace and all in it
        child.wait(timeout=30)
        raise
    if code != 0:
        progress(f"ray: the Ray side exited with {code}")


def _figures(results: dict, taskyard_figures: list[Figure]) -> tuple[list[Figure], list[str]]:
    figures, errors = [], []
    for key, (name, unit) in NAMES.items():
        result = results.get(key) or {"error": "not measured"}
        name = name.format(n=result.get("count", ""), cpus=results.get("cpus", ""))
        if "error" in result:
            errors.append(f"{key}: {result['error']}")
        elif "unmeasured" in result:
            figures.append(Figure("ray", name, unit, None, n=0, note=f"not measurable: {result['unmeasured']}"))
        else:
            samples = result["samples"]
            make = single if len(samples) == 1 else spread
            figure = make("ray", name, unit, samples[0] if make is single else samples, note=result.get("note", ""))
            _compare(figure, key, taskyard_figures)
            figures.append(figure)
    if results.get("setup_error"):
        errors.append(f"setup: {results['setup_error']}")
    return figures, errors


def _compare(figure: Figure, key: str, taskyard_figures: list[Figure]) -> None:
    """Note taskyard's figure next to Ray's as ``taskyard (mode) 0.17 s = 0.07× Ray``."""
    ratios, parts = {}, []
    for wanted in PAIRS[key]:
        match = next((f for f in taskyard_figures if wanted in f.name and f.unit != "×"), None)
        if match is not None and match.median is not None and figure.median:
            ratio = ratios[match.name] = match.median / figure.median
            parts.append(f"taskyard{_mode(match.name)} {match.median:.3g} {match.unit} = {ratio:.2f}× Ray")
    figure.extra["taskyard_over_ray"] = ratios
    text = "; ".join(parts) or "no taskyard figure in this run"
    figure.note = "; ".join(part for part in (figure.note, text) if part)


def _mode(name: str) -> str:
    for mode in ("warm pool", "cold worker"):
        if mode in name:
            return f" ({mode})"
    return ""
