"""``python -m bench [--smoke] [--only NAMES] [--ray/--no-ray] [--json PATH]``: see ``bench/README.md``."""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from . import (
    callbacks,
    capacity,
    dashboard,
    deep_queue,
    e2e,
    envs,
    footprint,
    kill,
    logs,
    notebooks,
    outage,
    ray_backend,
    ray_side,
    report,
    sandbox,
    scale,
    throughput,
    uploads,
    vault,
    workflow,
)
from .figures import BenchError, Figure
from .harness import progress
from .plan import FULL, SMOKE, Plan

MEASUREMENTS = {
    "e2e": e2e.run,
    "sandbox": sandbox.run,
    "throughput": throughput.run,
    "capacity": capacity.run,
    "logs": logs.run,
    "kill": kill.run,
    "scale": scale.run,
    "footprint": footprint.run,
    "vault": vault.run,
    "envs": envs.run,
    "notebooks": notebooks.run,
    "callbacks": callbacks.run,
    "workflow": workflow.run,
    "outage": outage.run,
    "uploads": uploads.run,
    "dashboard": dashboard.run,
    "deep-queue": deep_queue.run,
}
NAMES = [*MEASUREMENTS, "ray", "ray-backend"]
RAY_PARTS = {"ray", "ray-backend"}  # parts that start a Ray cluster


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Measure taskyard (see bench/README.md).")
    parser.add_argument("--smoke", action="store_true", help="tiny counts, no Ray: checks that it all works (CI)")
    parser.add_argument("--only", metavar="NAMES", help=f"comma-separated subset of: {', '.join(NAMES)}")
    parser.add_argument(
        "--ray",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the Ray Jobs side by side (default: on when ray is installed, off with --smoke)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="results file (default: bench/results/<UTC>.json)")
    args = parser.parse_args(argv)
    args.names = _names(parser, args.only)
    return args


def _names(parser: argparse.ArgumentParser, only: str | None) -> list[str]:
    if not only:
        return list(NAMES)
    wanted = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in NAMES]
    if unknown:
        parser.error(f"unknown measurement(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    return [name for name in NAMES if name in wanted]


def run_all(args: argparse.Namespace, plan: Plan) -> tuple[list[Figure], dict, dict]:
    figures: list[Figure] = []
    errors: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for name in args.names:
        if name in RAY_PARTS:
            reason = ray_side.skip_reason(args.ray, plan.smoke)
            if reason is not None:
                skipped[name] = reason
                progress(f"{name}: skipped: {reason}")
                continue
        progress(f"{name}: starting")
        began = time.monotonic()
        try:
            if name == "ray":
                found, failures = ray_side.run(plan, figures)
                figures += found
                if failures:
                    raise BenchError("; ".join(failures))
            elif name == "ray-backend":
                figures += ray_backend.run(plan)
            else:
                figures += MEASUREMENTS[name](plan)
        except Exception as exc:
            errors[name] = "".join(traceback.format_exception(exc)).strip()
            progress(f"{name}: FAILED: {type(exc).__name__}: {exc}")
            continue
        progress(f"{name}: done in {time.monotonic() - began:.1f} s")
    return figures, errors, skipped


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    plan = SMOKE if args.smoke else FULL
    started = datetime.now(timezone.utc)
    load_before = os.getloadavg()
    figures, errors, skipped = run_all(args, plan)
    load = {"before": load_before, "after": os.getloadavg()}
    data = report.payload(
        started=started, argv=argv, plan=plan, figures=figures, errors=errors, skipped=skipped, load=load
    )
    path = args.json or report.default_path(started)
    report.write_json(path, data)
    report.print_table(figures, errors, skipped)
    print(f"load average (1 min) before/after: {load_before[0]:.2f} / {load['after'][0]:.2f}; results: {path}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
