"""uploads: the control plane's memory while a large task folder is uploaded and run.

A 90 MB folder of random bytes (not compressible) is packed, uploaded and run; the server's RSS is
sampled from /proc every 20 ms from before the upload until the task has ended. The figure is the
peak's growth over the RSS just before: uploads are streamed to disk, and a bundle travels to its
worker from disk (only small ones, by their measured size, come inline with the assignment).
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import taskyard
from taskyard.status import TaskStatus

from .figures import BenchError, Figure, Target, single
from .harness import progress, rss_mb, running
from .plan import Plan


def run(plan: Plan) -> list[Figure]:
    size_mb = 5 if plan.smoke else 90
    with tempfile.TemporaryDirectory(prefix="taskyard-bench-uploads-", dir="/var/tmp") as folder:
        Path(folder).chmod(0o755)
        (Path(folder) / "task.py").write_text("import os\nprint(os.path.getsize('data.bin'))\n")
        (Path(folder) / "data.bin").write_bytes(os.urandom(size_mb << 20))
        with running("uploads", TASKYARD_WARM_WORKERS="0") as server:
            before, peak = _peak_while(server.pid, lambda: _run(server, folder))
    progress(f"uploads: {size_mb} MB folder, RSS {before:.0f} MB before, {peak:.0f} MB at most")
    name = f"control-plane RSS growth while a {size_mb} MB task folder is uploaded and run"
    return [single("uploads", name, "MB", peak - before, target=Target("<", 30))]


def _run(server, folder: str) -> None:
    task = taskyard.submit("task.py", files_path=folder, client=server.client())
    if task.wait(timeout=600) is not TaskStatus.SUCCESS:
        raise BenchError(f"the upload task ended {task.status.alias}: {task.logs()[-500:]}")


def _peak_while(pid: int, work) -> tuple[float, float]:
    before = rss_mb(pid)
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], rss_mb(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        work()
    finally:
        done.set()
        sampler.join()
    return before, peak[0]
