"""The results: a Rich table on the terminal and a JSON file with every sample."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

import taskyard

from .figures import Figure
from .harness import REPO
from .plan import Plan

RESULTS = REPO / "bench" / "results"


def default_path(started: datetime) -> Path:
    return RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "taskyard": taskyard.__version__,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def payload(
    *, started: datetime, argv: list[str], plan: Plan, figures: list[Figure], errors: dict, skipped: dict, load: dict
) -> dict:
    return {
        "started_at": started.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "command": " ".join(["python -m bench", *argv]),
        "smoke": plan.smoke,
        "plan": asdict(plan),
        "machine": {**machine(), "load_average": load},
        "figures": [figure.to_json() for figure in figures],
        "errors": errors,
        "skipped": skipped,
    }


def print_table(figures: list[Figure], errors: dict, skipped: dict, console: Console | None = None) -> None:
    console = console or Console(width=None if sys.stdout.isatty() else 200)
    table = Table(title="taskyard benchmarks", show_lines=False)
    for column in ("measurement", "figure", "median", "p90", "n", "target", "met?", "note"):
        table.add_column(column, justify="right" if column in ("median", "p90", "n") else "left")
    for f in figures:
        table.add_row(
            f.measurement,
            f.name,
            _num(f.median, f.unit),
            _num(f.p90, f.unit),
            str(f.n),
            f.target_text(),
            _met(f.met),
            f.note,
        )
    for name, message in errors.items():
        table.add_row(name, "[red]error[/red]", "", "", "", "", _met(False), message.splitlines()[-1][:160])
    for name, reason in skipped.items():
        table.add_row(name, f"skipped: {reason}", "", "", "", "", "", "")
    console.print(table)


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    digits = 3 if abs(value) < 10 else 1 if abs(value) < 1000 else 0
    return f"{value:,.{digits}f} {unit}"


def _met(met: bool | None) -> str:
    return "" if met is None else "[green]yes[/green]" if met else "[red]no[/red]"
