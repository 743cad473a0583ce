"""sandbox: what the bubblewrap sandbox adds to a hello task, next to the same run without it and bare python.

Two control planes, one after the other in the same run: one with ``TASKYARD_SANDBOX=required``
(every task in bwrap, as a user of its worker's own when the control plane is root) and one with
``TASKYARD_SANDBOX=off``. Each measures the e2e hello ``run_task`` (warm pool), as ``e2e`` does.
"""

from __future__ import annotations

from . import e2e
from .figures import Figure, Target, single, spread
from .plan import Plan

MODES = {"sandbox on": {"TASKYARD_SANDBOX": "required"}, "sandbox off": {"TASKYARD_SANDBOX": "off"}}


def run(plan: Plan) -> list[Figure]:
    bare = spread("sandbox", "bare `python examples/task_1.py` (subprocess)", "s", e2e.bare_runs(plan))
    runs = {mode: spread("sandbox", f"hello run_task, {mode}", "s", e2e.sdk_runs(plan, mode, env))
            for mode, env in MODES.items()}
    on, off = runs["sandbox on"], runs["sandbox off"]
    added = single("sandbox", "added by the sandbox (median on − median off)", "s", on.median - off.median,
                   target=Target("<", 0.015))
    ratio = [sample / bare.median for sample in on.samples]
    return [bare, off, on, added, spread("sandbox", "hello run_task ÷ bare python, sandbox on", "×", ratio,
                                         target=Target("<", 5))]
