"""Generated DAGs and the ported seed DAG on real Apache Airflow 3, their tasks run on a real taskyard server.

Marked ``airflow`` (``pytest -m airflow`` runs only these; ``-m 'not airflow'`` leaves them out).
"""

from __future__ import annotations

import getpass
import json
import re
import shutil
from pathlib import Path

import pytest

from taskyard.workflows import generate_files

from support import EXAMPLES, write

pytestmark = pytest.mark.airflow

FAN_IN = "[process_table_1, process_table_2] >> process_final_table"
SEED = Path(__file__).resolve().parent.parent / "practicus_seeds" / "run_task_safe"
FINAL = "id,city,sales\r\n1,ISTANBUL,1200\r\n2,ANKARA,800\r\n3,IZMIR,450\r\n"


def _connection(server) -> dict[str, str]:
    host, port = server.url.removeprefix("http://").split(":")
    value = {"conn_type": "http", "host": host, "port": int(port), "password": server.token}
    return {"AIRFLOW_CONN_TASKYARD_DEFAULT": json.dumps(value)}


def _new_tasks(server, before: set[str]) -> dict[str, object]:
    return {t.file_name: t for t in server.client.list_tasks(limit=50).tasks if t.id not in before}


def _task_ids(server) -> set[str]:
    return {t.id for t in server.client.list_tasks(limit=200).tasks}


def test_the_generated_dag_and_the_ported_seed_dag_import_with_no_errors(airflow, dags):
    generate_files("tables", FAN_IN, EXAMPLES / "workflow", output_path=dags / "tables", username="alice")
    shutil.copytree(SEED, dags / "run_task_safe")
    result = airflow.run("bag", str(dags))
    assert result["import_errors"] == {}
    assert result["dag_ids"] == [f"run_task_safe.{getpass.getuser()}", "tables.alice"]


def test_dag_test_of_a_fan_in_runs_its_tasks_on_taskyard(airflow, dags, server, tmp_path):
    generate_files("tables", FAN_IN, EXAMPLES / "workflow", output_path=dags / "tables", username="ci")
    before = _task_ids(server)
    result = airflow.run("test", str(dags), "tables.ci", env=_connection(server))
    assert result["state"] == "success", result["log"][-6000:]
    assert result["tasks"] == {"process_table_1": "success", "process_table_2": "success",
                               "process_final_table": "success"}
    ran = _new_tasks(server, before)
    assert sorted(ran) == ["process_final_table.py", "process_table_1.py", "process_table_2.py"]
    assert all(task.alias == "Success" for task in ran.values())
    from taskyard.sdk import Task

    Task(ran["process_final_table.py"].id, client=server.client).download_outputs(output_dir=tmp_path / "out")
    assert (tmp_path / "out" / "final_table.csv").read_bytes().decode() == FINAL  # inputs came from upstream
    assert re.search(r"\] 1 ISTANBUL 1200 +\[airflow\.task\]", result["log"])  # a line of the Airflow task log


def test_a_failing_task_fails_the_dag_run_and_its_downstream_is_upstream_failed(airflow, dags, server, tmp_path):
    write(tmp_path / "tasks", "extract.py", "print('extracting')\nraise SystemExit(3)\n")
    write(tmp_path / "tasks", "load.sh", "echo never\n")
    write(tmp_path / "tasks", "other.sh", "echo other branch\n")
    generate_files("failing", "extract >> load\nother", tmp_path / "tasks", output_path=dags / "failing",
                   username="ci")
    env = {"TASKYARD_URL": server.url, "TASKYARD_TOKEN": server.token}  # no connection: the environment
    result = airflow.run("test", str(dags), "failing.ci", env=env)
    assert result["state"] == "failed"
    assert result["tasks"] == {"extract": "failed", "load": "upstream_failed", "other": "success"}
    assert "ended Failed: the task exited with code 3" in result["log"]


def test_the_ported_seed_run_task_safe_dag_runs(airflow, dags, server):
    shutil.copytree(SEED, dags / "run_task_safe")
    before = _task_ids(server)
    result = airflow.run("test", str(dags), f"run_task_safe.{getpass.getuser()}", env=_connection(server))
    assert result["state"] == "success", result["log"][-6000:]
    assert result["tasks"] == {"task1": "success"}
    ran = _new_tasks(server, before)
    assert list(ran) == ["task1.py"]
    worker = server.client.worker(ran["task1.py"].worker_name)
    assert (worker.size, worker.image) == ("Small", "practicus")  # from its default_worker.json
    assert "Running task 1 is completed" in result["log"]
