"""footprint: embedded server start time and idle control-plane RSS.

Start: a cold ``embedded.ensure_running`` in a fresh ``TASKYARD_HOME`` (new database, migrations
run) until the server answers its health check. Idle RSS: the server process alone (not its warm
workers), read from /proc after it has been idle for a while after start.
"""

from __future__ import annotations

import time

from .figures import Figure, Target, spread
from .harness import progress, running
from .plan import Plan


def run(plan: Plan) -> list[Figure]:
    starts, rss = [], []
    for _ in range(plan.footprint_runs):
        with running("footprint") as server:
            starts.append(server.start_seconds)
            time.sleep(plan.idle_seconds)
            rss.append(server.rss_mb())
    progress(f"footprint: {len(starts)} starts")
    idle = f"{plan.idle_seconds:g} s after start, warm pool (default)"
    return [
        spread(
            "footprint",
            "embedded server cold start (fresh home) until it answers",
            "s",
            starts,
            target=Target("<", 1.5),
        ),
        spread("footprint", f"idle control-plane RSS, {idle}", "MB", rss, target=Target("<", 120)),
    ]
