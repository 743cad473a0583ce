"""Parsing flows in Airflow's >> syntax, and merging each task's worker config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from taskyard.config import WorkerConfig, merge_worker_configs, worker_config_beside
from taskyard.workflows import folder
from taskyard.workflows.dag import FlowError, parse, task_files

from support import write

SEEDS = Path(__file__).resolve().parent.parent / "practicus_seeds"


def test_fan_in_of_the_seed():
    dag = parse("[process_table_1, process_table_2] >> process_final_table")
    assert dag.names == ["process_table_1", "process_table_2", "process_final_table"]
    assert dag.upstream == {
        "process_table_1": [],
        "process_table_2": [],
        "process_final_table": ["process_table_1", "process_table_2"],
    }
    assert dag.roots() == ["process_table_1", "process_table_2"]


def test_chains_lists_and_several_lines_make_one_dag():
    dag = parse("a >> [b, c] >> d\n# a comment line\nd >> e; x\n\n[e, x] >> f  # and a trailing one")
    assert dag.upstream == {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": ["d"], "x": [], "f": ["e", "x"]}
    assert dag.downstream("a") == ["b", "c"]


def test_a_link_written_twice_counts_once():
    assert parse("a >> b\na >> b").upstream["b"] == ["a"]


@pytest.mark.parametrize(
    ("flow", "line", "column", "message", "hint"),
    [
        ("a >> ", 1, 5, "expected a task name or '['", 'write "a >> b"'),
        ("a >> [b, c", 1, 11, "expected ',' or ']', found the end of the line", "close the list with ]"),
        ("a >> b\nb c", 2, 3, "unexpected 'c'", "join tasks with >>"),
        ("a << b", 1, 3, "unexpected '<<'", "use >> (upstream on the left)"),
        ("a >> [b, >> c]", 1, 10, "expected a task name, found '>>'", "without extension"),
        ("a >> b!", 1, 7, "unexpected '!'", "join tasks with >>"),
        ("", 1, 1, "the flow is empty", "task_1 >> task_2"),
    ],
)
def test_syntax_errors_give_their_place_and_a_hint(flow, line, column, message, hint):
    with pytest.raises(FlowError) as caught:
        parse(flow)
    error = caught.value
    assert (error.line, error.column) == (line, column)
    assert message in error.message and hint in error.hint
    assert error.message.startswith(f"flow line {line}, column {column}: ")
    assert error.field == "dag_flow" and error.code == "invalid_input"


def test_cycles_are_refused_with_the_cycle_named():
    with pytest.raises(FlowError, match=r"cycle: b >> c >> d >> b") as caught:
        parse("a >> b >> c\nc >> d\nd >> b")
    assert (caught.value.line, caught.value.column) == (1, 6)
    assert "remove one of these links" in caught.value.hint
    with pytest.raises(FlowError, match=r"cycle: a >> a"):
        parse("a >> a")


def test_names_must_be_one_task_file():
    dag = parse("[load, clean] >> report")
    assert task_files(dag, ["load.py", "clean.sh", "report.ipynb", "notes.txt"]) == {
        "load": "load.py", "clean": "clean.sh", "report": "report.ipynb",
    }
    with pytest.raises(FlowError, match="'clean' is ambiguous: clean.py and clean.sh") as caught:
        task_files(dag, ["load.py", "clean.sh", "clean.py", "report.py"])
    assert (caught.value.line, caught.value.column) == (1, 8)
    with pytest.raises(FlowError, match="no task file for 'report'") as caught:
        task_files(dag, ["load.py", "clean.py", "reports.py"])
    assert caught.value.hint == "did you mean 'reports'?"
    with pytest.raises(FlowError, match="no task file for 'load'.*add load.py or load.sh"):
        parse("load", ["other.txt"])


# -- worker configs ----------------------------------------------------------------------------------


def _json(folder_path: Path, name: str, config: WorkerConfig | dict) -> None:
    text = config.model_dump_json(exclude_none=True) if isinstance(config, WorkerConfig) else json.dumps(config)
    write(folder_path, name, text)


def test_task_json_overrides_default_json_key_by_key(tmp_path):
    _json(tmp_path, "default_worker.json", WorkerConfig(worker_size="Small", worker_image="practicus",
                                                        env_variables={"A": "default", "B": "default"}))
    _json(tmp_path, "t_worker.json", WorkerConfig(worker_size="Medium", env_variables={"B": "task", "C": 3}))
    merged = worker_config_beside(tmp_path, "t.py")
    assert merged == WorkerConfig(worker_size="Medium", worker_image="practicus",
                                  env_variables={"A": "default", "B": "task", "C": 3})
    assert worker_config_beside(tmp_path, "other.py") == WorkerConfig(
        worker_size="Small", worker_image="practicus", env_variables={"A": "default", "B": "default"})
    assert worker_config_beside(tmp_path / "nowhere", "t.py") is None


def test_merge_leaves_what_a_later_config_does_not_give():
    base = WorkerConfig(worker_size="Small", startup_script="echo hi", personal_secrets=["s"])
    assert merge_worker_configs(base, None, WorkerConfig(startup_script="echo bye")) == WorkerConfig(
        worker_size="Small", startup_script="echo bye", personal_secrets=["s"])
    assert merge_worker_configs() == WorkerConfig()


def test_the_seed_default_worker_json_with_its_login_keys_reads_fine(tmp_path):
    shutil.copytree(SEEDS / "run_task_safe", tmp_path / "flow")
    raw = json.loads((tmp_path / "flow" / "default_worker.json").read_text())
    assert {"service_url", "email", "refresh_token"} <= set(raw)
    configs = folder.worker_configs(tmp_path / "flow", {"task1": "task1.py"})
    assert configs == {"task1": WorkerConfig(worker_image="practicus", worker_size="Small")}


def test_flow_configs_files_then_code_then_custom(tmp_path):
    write(tmp_path, "a.py", "")
    write(tmp_path, "b.py", "")
    _json(tmp_path, "default_worker.json", {"worker_size": "Small", "env_variables": {"X": "file", "Y": "file"}})
    _json(tmp_path, "b_worker.json", {"worker_size": "Large", "env_variables": {"Y": "b-file"}})
    files = folder.task_files(tmp_path, parse("a >> b"))
    configs = folder.worker_configs(
        tmp_path, files, WorkerConfig(env_variables={"Z": "code"}), [("b", WorkerConfig(env_variables={"X": "b"}))]
    )
    assert configs["a"] == WorkerConfig(worker_size="Small", env_variables={"X": "file", "Y": "file", "Z": "code"})
    assert configs["b"] == WorkerConfig(worker_size="Large", env_variables={"X": "b", "Y": "b-file", "Z": "code"})
    with pytest.raises(ValueError, match="custom_worker_configs names tasks not in the flow: c"):
        folder.worker_configs(tmp_path, files, None, {"c": WorkerConfig()})
