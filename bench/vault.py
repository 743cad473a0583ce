"""vault: the hello ``run_task`` with one secret injected, next to the same run with none.

One control plane (warm pool), one personal secret in its vault. The runs alternate, one with
``WorkerConfig(personal_secrets=[...])`` and one without (and which goes first alternates too), so
both see the same machine and the same state of the control plane; each is timed as ``e2e``
times it (submit to Success with the logs in hand), after the same untimed settling. The secret's
run pays for its check at submit, its lookup and decryption at assignment, its variable and a log
masker in the agent.
"""

from __future__ import annotations

from taskyard.config import WorkerConfig
from taskyard.vault import create_or_update_secret

from . import e2e
from .figures import Figure, Target, single, spread
from .harness import call_with_timeout, expected_warm, progress, running, settle
from .plan import Plan

SECRET = "BENCH_TOKEN"
MODES = {"no secret": None, "one secret injected": WorkerConfig(personal_secrets=[SECRET])}


def run(plan: Plan) -> list[Figure]:
    samples = alternated_runs(plan)
    runs = {mode: spread("vault", f"hello run_task, {mode}", "s", samples[mode]) for mode in MODES}
    none, one = runs["no secret"], runs["one secret injected"]
    added = single("vault", "added by one secret (median with − median without)", "s", one.median - none.median,
                   target=Target("<", 0.005))
    return [none, one, added]


def alternated_runs(plan: Plan) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    with running("vault") as server:
        client = server.client()
        create_or_update_secret(SECRET, "bench-" + "s3cr3t" * 6, client=client)
        warm = expected_warm(server.env)
        for index in range(plan.warmup + plan.e2e_runs):
            order = list(MODES.items())
            for mode, config in order if index % 2 == 0 else reversed(order):  # no mode always goes first
                settle(client, warm)
                timed_run = lambda config=config: e2e.hello(client, config)  # noqa: E731
                seconds = call_with_timeout(timed_run, e2e.RUN_TIMEOUT, f"vault run ({mode})")
                if index >= plan.warmup:
                    samples[mode].append(seconds)
        progress(f"vault: {plan.e2e_runs} runs of each")
    return samples
