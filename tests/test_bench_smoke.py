"""The bench suite runs end to end in smoke mode and reports every measurement: behaviour, not timing."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MEASUREMENTS = {
    "e2e", "sandbox", "throughput", "capacity", "log latency", "log throughput", "kill", "scale", "footprint", "vault",
    "envs", "notebooks", "callbacks", "workflow", "outage", "dashboard", "deep-queue",
}


def test_bench_smoke_reports_every_measurement(tmp_path):
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "bench", "--smoke", "--json", str(out)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    results = json.loads(out.read_text())
    assert results["smoke"] is True
    assert results["errors"] == {}
    assert "ray" in results["skipped"] and "ray-backend" in results["skipped"]

    figures = results["figures"]
    assert {figure["measurement"] for figure in figures} >= MEASUREMENTS
    for figure in figures:
        assert _number(figure["median"]), figure
        assert figure["n"] >= 1 and all(_number(sample) for sample in figure["samples"]), figure
        assert figure["name"] and figure["unit"], figure

    log_throughput = [figure for figure in figures if figure["measurement"] == "log throughput"]
    assert log_throughput and all("lost: 0" in figure["note"] for figure in log_throughput)
    assert all(figure["extra"]["lost"] == 0 and figure["extra"]["sha256_match"] for figure in log_throughput)
    assert "taskyard benchmarks" in done.stdout  # the table


def test_bench_smoke_scale_and_deep_queue_report_each_level_on_each_store(tmp_path):
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "bench", "--smoke", "--only", "scale,deep-queue", "--json", str(out)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    results = json.loads(out.read_text())
    assert results["errors"] == {}
    deep = [figure for figure in results["figures"] if figure["measurement"] == "deep-queue"]
    stores = ["SQLite", "PostgreSQL"] if any(f["name"].endswith("PostgreSQL") for f in deep) else ["SQLite"]
    for store in stores:
        for level in ("100", "300"):
            mine = [f["name"] for f in deep if f["name"].endswith(f" {level} queued, {store}")]
            assert len(mine) == 7, (store, level, mine)  # the batch rate, its cost, the first page, 4 views
        assert any(f["name"].startswith("submit_many cost per task flatness") and store in f["name"] for f in deep)
    for figure in deep:
        assert _number(figure["median"]) and figure["median"] > 0, figure
    assert any(figure["measurement"] == "scale" for figure in results["figures"])


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
