"""Generated DAG folders, the DAG-file helpers and regions, without Airflow (see test_airflow.py for it)."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from typer.testing import CliRunner

from taskyard.cli import app
from taskyard.config import WorkerConfig
from taskyard.errors import InvalidInput
from taskyard.regions import region_factory
from taskyard.workflows import generate_files, get_airflow_params, get_dag_info
from taskyard.workflows.airflow import DagFilesExist, params_config, task_file
from taskyard.workflows.dag import FlowError

from support import EXAMPLES, default_client_of, write

FAN_IN = "[process_table_1, process_table_2] >> process_final_table"


def test_generate_files_writes_the_seed_shape(tmp_path):
    out = tmp_path / "dags" / "tables"
    dag_file = generate_files(
        "tables", FAN_IN, EXAMPLES / "workflow", WorkerConfig(worker_size="Small"),
        [("process_final_table", WorkerConfig(env_variables={"JOIN": "inner"}))],
        schedule_interval="0 7 * * *", start_date=datetime(2025, 5, 9, 7, 0), retries=2, output_path=out,
        username="alice",
    )
    assert dag_file == out / "tables_dag.py"
    names = {path.name for path in out.iterdir()}
    assert {"tables_dag.py", "process_table_1.py", "process_table_2.py", "process_final_table.py",
            "default_worker.json", "process_final_table_worker.json", "dag_info.json"} <= names
    assert WorkerConfig.from_file(out / "default_worker.json") == WorkerConfig(worker_size="Small")
    assert WorkerConfig.from_file(out / "process_final_table_worker.json").env_variables == {"JOIN": "inner"}
    text = dag_file.read_text()
    compile(text, str(dag_file), "exec")
    for line in ("from airflow.sdk import dag, task", "dag_key, username = prt.workflows.get_dag_info(__file__)",
                 "schedule='0 7 * * *'", "start_date=datetime(2025, 5, 9, 7, 0)", '"retries": 2',
                 'process_table_1 = task(run_with_dynamic_param, task_id="process_table_1")()',
                 "    [process_table_1, process_table_2] >> process_final_table",
                 "params=prt.workflows.get_airflow_params()"):
        assert line in text
    assert get_dag_info(str(dag_file)) == ("tables", "alice")


def test_generate_files_keeps_what_is_there_unless_told(tmp_path):
    write(tmp_path, "a.py", "")
    generate_files("k", "a", tmp_path)
    assert (tmp_path / "k_dag.py").is_file()  # beside the tasks by default
    with pytest.raises(DagFilesExist, match="k_dag.py already in .*overwrite_existing=True replaces them"):
        generate_files("k", "a", tmp_path)
    generate_files("k", "a", tmp_path, overwrite_existing=True)
    with pytest.raises(InvalidInput, match="dag_key 'a b'"):
        generate_files("a b", "a", tmp_path)
    with pytest.raises(FlowError, match="no task file for 'b'"):
        generate_files("k2", "a >> b", tmp_path)
    with pytest.raises(InvalidInput, match="custom_worker_configs names tasks not in the flow: z"):
        generate_files("k3", "a", tmp_path, custom_worker_configs={"z": WorkerConfig()})


def test_task_names_that_are_not_python_names_get_variables(tmp_path):
    write(tmp_path, "load-data.py", "")
    write(tmp_path, "v1.2.sh", "")
    text = generate_files("odd", "load-data >> v1.2", tmp_path).read_text()
    compile(text, "odd_dag.py", "exec")
    assert 'load_data = task(run_with_dynamic_param, task_id="load-data")()' in text
    assert "    load_data >> v1_2" in text


def test_dag_info_without_its_file_comes_from_the_name(tmp_path):
    key, user = get_dag_info(str(tmp_path / "run_task_safe_dag.py"))
    assert key == "run_task_safe" and user and "." not in user


def test_params_override_the_config_and_empty_ones_do_not():
    assert params_config(get_airflow_params()) == WorkerConfig()
    given = {"worker_size": "Large", "worker_image": "", "env_variables": {"A": 1}, "other": "x", "log_level": "None"}
    assert params_config(given) == WorkerConfig(worker_size="Large", env_variables={"A": 1})


def test_task_file_is_the_one_file_of_the_task_id(tmp_path):
    write(tmp_path, "t.sh", "")
    write(tmp_path, "u.py", "")
    write(tmp_path, "u.ipynb", "{}")
    assert task_file(tmp_path, "t") == "t.sh"
    with pytest.raises(FlowError, match="ambiguous"):
        task_file(tmp_path, "u")


def test_cli_flow_generate(server, monkeypatch, tmp_path):
    with default_client_of(server, monkeypatch):
        args = ["flow", "generate", str(EXAMPLES / "workflow"), "--dag-key", "tables", "--flow", FAN_IN,
                "--schedule", "@daily", "--retries", "1", "--out", str(tmp_path / "out")]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == str(tmp_path / "out" / "tables_dag.py")
        assert "schedule='@daily'" in (tmp_path / "out" / "tables_dag.py").read_text()
        again = CliRunner().invoke(app, args)
        assert again.exit_code == 2 and "--overwrite replaces them" in again.stderr
        assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 0
    assert json.loads((tmp_path / "out" / "dag_info.json").read_text())["dag_key"] == "tables"


def test_region_worker_list_as_the_seed_cleanup_reads_it(server, tmp_path):
    from datetime import timezone

    import taskyard

    write(tmp_path, "t.py", "print('kept')\n")
    worker, ok = taskyard.run_task("t.py", tmp_path, terminate_on_completion=False, client=server.client)
    assert ok
    region = region_factory({"worker_image": "practicus", "service_url": "", "email": ""}, client=server.client)
    assert str(region) == f"taskyard region at {server.url}"
    listed = {w.name: w for w in region.worker_list}
    kept = listed[worker.name]
    assert kept.status == "Running"
    assert int((datetime.now(timezone.utc) - kept.creation_time).total_seconds()) >= 0
    kept.terminate()
    assert worker.name not in {w.name for w in region_factory(client=server.client).worker_list
                               if w.status in ("Provisioning", "Running")}
