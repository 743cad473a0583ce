"""Log latency and log throughput, both read by a follower through ``Task.stream_logs``.

Latency: the task prints ``time.time()`` every 50 ms; each line's latency is the follower's clock
when the line arrives minus the time printed in it (same machine, same clock).
Throughput: the task writes 64-KiB lines (an 8-digit line number, then filler) to stdout as fast
as it can; MB/s (10^6 bytes) from the task's start (a timestamp it writes to stderr first) until
the follower holds every stdout byte. Byte count and sha256 of what arrived must match what was
written, or the measurement fails.
"""

from __future__ import annotations

import hashlib
import time

from taskyard.sdk import Task, submit
from taskyard.status import TaskStatus

from .figures import BenchError, Figure, Target, single, spread
from .harness import expect_status, progress, running, task_folder, wait_terminal
from .plan import Plan

TICKER = """\
import time
for _ in range({ticks}):
    print(f"{{time.time():.6f}}", flush=True)
    time.sleep(0.05)
"""

LINE = 64 * 1024
FLOOD = """\
import sys, time
sys.stderr.write(f"start {{time.time():.6f}}\\n")
sys.stderr.flush()
out = sys.stdout.buffer
pad = b"x" * ({line} - 9)
for i in range({lines}):
    out.write(b"%08d" % i + pad + b"\\n")
out.flush()
"""
TIMEOUT = 300.0


def run(plan: Plan) -> list[Figure]:
    with running("logs") as server:
        client = server.client()
        return [latency(plan, client), throughput(plan, client)]


def latency(plan: Plan, client) -> Figure:
    with task_folder({"ticker.py": TICKER.format(ticks=plan.ticks)}) as folder:
        task = submit("ticker.py", folder, client=client)
    lags, text = [], ""
    for stream, chunk in task.stream_logs(deadline=time.monotonic() + TIMEOUT):
        arrived = time.time()
        if stream != "stdout":
            continue
        *lines, text = (text + chunk).split("\n")
        lags += [arrived - float(line) for line in lines if line]
    expect_status(wait_terminal(client, task.id), TaskStatus.SUCCESS)
    if len(lags) != plan.ticks:
        raise BenchError(f"log latency: {len(lags)} of {plan.ticks} lines arrived")
    progress(f"log latency: {len(lags)} lines")
    name = f"log latency, {plan.ticks} lines 50 ms apart, stream_logs follower, warm pool"
    return spread("log latency", name, "s", lags, target=Target("<", 0.1))


def throughput(plan: Plan, client) -> Figure:
    lines = max(1, round(plan.log_bytes / LINE))
    expected = _flood_digest(lines)
    with task_folder({"flood.py": FLOOD.format(line=LINE, lines=lines)}) as folder:
        task = submit("flood.py", folder, client=client)
    got = _follow(task, lines * LINE)
    expect_status(wait_terminal(client, task.id), TaskStatus.SUCCESS)
    lost = max(0, lines * LINE - got["bytes"])
    if got["bytes"] != lines * LINE or got["sha256"] != expected:
        raise BenchError(
            f"log throughput: wrote {lines * LINE} bytes, follower got {got['bytes']} (lost: {lost}); "
            f"sha256 {'matches' if got['sha256'] == expected else 'differs'}"
        )
    seconds = got["end"] - got["start"]
    mb = lines * LINE / 1e6
    progress(f"log throughput: {mb:.1f} MB in {seconds:.2f} s")
    name = f"log throughput, {mb:.1f} MB as {lines} lines of 64 KiB, stream_logs follower, warm pool"
    note = f"lost: 0, sha256 match, {mb:.1f} MB in {seconds:.2f} s"
    extra = {"lost": 0, "bytes": lines * LINE, "sha256_match": True, "seconds": seconds}
    return single("log throughput", name, "MB/s", mb / seconds, target=Target(">=", 20), note=note, extra=extra)


def _follow(task: Task, total: int) -> dict:
    digest, count, start, end = hashlib.sha256(), 0, None, None
    deadline = time.monotonic() + TIMEOUT
    for stream, text in task.stream_logs(deadline=deadline):
        if stream == "stdout":
            data = text.encode()
            digest.update(data)
            count += len(data)
            if count >= total and end is None:
                end = time.time()
        elif text.startswith("start "):
            start = float(text.split()[1])
    if start is None or end is None:
        raise BenchError(f"log throughput: got {count} of {total} bytes (start seen: {start is not None})")
    return {"bytes": count, "sha256": digest.hexdigest(), "start": start, "end": end}


def _flood_digest(lines: int) -> str:
    digest = hashlib.sha256()
    pad = b"x" * (LINE - 9)
    for i in range(lines):
        digest.update(b"%08d" % i + pad + b"\n")
    return digest.hexdigest()
