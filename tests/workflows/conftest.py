"""Real Apache Airflow 3 for the tests marked ``airflow``: installed once into a venv of its own, reused.

The venv is in ``$TASKYARD_TEST_CACHE`` (default ``~/.cache/taskyard-tests``), made with uv from
PyPI; each test session gets its own ``AIRFLOW_HOME``, migrated with ``airflow db migrate``. Airflow
imports the taskyard under test through ``PYTHONPATH``. Tests skip, saying why, if it cannot be installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import taskyard

AIRFLOW_VERSION = "3.3.2"
PROBE = Path(__file__).with_name("airflow_probe.py")
INSTALL_TIMEOUT = 1800


@dataclass
class Airflow:
    python: Path
    env: dict[str, str]
    dags: Path

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> dict:
        """Run the probe script in Airflow's Python and return the JSON it printed last."""
        began = time.monotonic()
        done = subprocess.run([str(self.python), str(PROBE), *args], env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout)
        sys.stderr.write(f"[airflow] {args[0]} took {time.monotonic() - began:.1f} s\n")
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-6000:]
        last = [line for line in done.stdout.splitlines() if line.startswith("{")][-1]
        result = json.loads(last)
        result["log"] = done.stdout + done.stderr
        return result


def _cache() -> Path:
    return Path(os.environ.get("TASKYARD_TEST_CACHE") or Path.home() / ".cache" / "taskyard-tests")


def _install(venv: Path) -> None:
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    shutil.rmtree(venv, ignore_errors=True)
    commands = [
        [uv, "venv", "-q", "--python", sys.executable, str(venv)],
        [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), f"apache-airflow=={AIRFLOW_VERSION}"],
    ]
    for command in commands:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"Apache Airflow {AIRFLOW_VERSION} could not be installed: {exc}")
        if done.returncode != 0:
            pytest.skip(f"Apache Airflow {AIRFLOW_VERSION} could not be installed: {done.stderr[-1500:]}")


@pytest.fixture(scope="session")
def airflow_python() -> Path:
    venv = _cache() / f"airflow-{AIRFLOW_VERSION}"
    ready = venv / ".installed"
    if not ready.is_file():
        began = time.monotonic()
        _install(venv)
        ready.write_text(AIRFLOW_VERSION)
        sys.stderr.write(f"[airflow] installed {AIRFLOW_VERSION} in {time.monotonic() - began:.1f} s\n")
    return venv / "bin" / "python"


@pytest.fixture(scope="session")
def airflow(airflow_python, tmp_path_factory) -> Iterator[Airflow]:
    home = tmp_path_factory.mktemp("airflow-home")
    dags = home / "dags"
    dags.mkdir()
    src = str(Path(taskyard.__file__).resolve().parents[1])
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TASKYARD_", "AIRFLOW"))}
    env.update(
        AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__UNIT_TEST_MODE="False", PYTHONPATH=src, TASKYARD_HOME=str(home / "taskyard"),
    )
    airflow_bin = airflow_python.with_name("airflow")
    began = time.monotonic()
    done = subprocess.run([str(airflow_bin), "db", "migrate"], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sys.stderr.write(f"[airflow] db migrate took {time.monotonic() - began:.1f} s\n")
    yield Airflow(airflow_python, env, dags)


@pytest.fixture
def dags(airflow) -> Path:
    """Airflow's dags folder, emptied for this test (``dag.test()`` reads the DAGs from there)."""
    for entry in airflow.dags.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    return airflow.dags
