"""Practicus code ported by changing its import: the logger, the exceptions, every WorkerConfig field,
and the worker JSON files found beside a task."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

import taskyard
import taskyard as prt
from taskyard.cli import app
from taskyard.config import NoEffectWarning, WorkerConfig

from support import default_client_of, write

SEEDS = Path(__file__).resolve().parent / "practicus_seeds"
LEVELS_TASK = """import logging
import taskyard as prt
prt.logger.debug("a debug line")
prt.logger.info("an info line")
print("root level", logging.getLevelName(logging.getLogger().level))
"""


# -- taskyard.logger --------------------------------------------------------------------------------


def test_logger_is_a_logging_logger_set_up_on_first_use_only():
    code = (
        "import logging, taskyard\n"
        "assert not logging.getLogger().handlers and not logging.getLogger('taskyard').handlers\n"
        "assert isinstance(taskyard.logger, logging.Logger) and taskyard.logger.name == 'taskyard'\n"
        "assert not logging.getLogger().handlers\n"
        "taskyard.logger.info('hello'); taskyard.logger.debug('hidden')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("\n") == 1
    assert done.stderr.rstrip().endswith(" INFO hello")
    assert done.stderr[:4].isdigit()  # the line starts with its time


def test_seed_task1_runs_with_its_default_worker_json(sdk_env, capsys):
    worker, success = taskyard.run_task(file_name="task1.py", files_path=SEEDS / "run_task_safe")
    assert success is True
    assert " INFO Running task 1 is completed" in capsys.readouterr().err
    assert (worker.size, worker.image) == ("Small", "practicus")  # from default_worker.json


def test_seed_deployer_task_logs_its_error_and_fails(sdk_env, capsys):
    env = {"DEPLOYMENT_KEY": "depl", "PREFIX": "models", "MODEL_NAME": "m", "MODEL_DIR": "no-such-model-dir"}
    config = WorkerConfig(worker_size="X-Small", env_variables=env)
    _, success = taskyard.run_task(file_name="deployer_task.py", files_path=SEEDS / "task_runner", worker_config=config)
    err = capsys.readouterr().err
    assert success is False
    assert " INFO Starting model deployment task" in err
    assert " ERROR Model directory is empty or does not exist." in err  # prt.logger.error, then the raise
    assert "RuntimeError: Model directory is empty" in err
    assert " INFO Starting model deployment task" in err
    assert " ERROR Model directory is empty or does not exist." in err
    assert "RuntimeError: Model directory is empty" in err


def test_log_levels_of_the_worker_config_reach_the_task(sdk_env, tmp_path, capsys):
    write(tmp_path, "levels.py", LEVELS_TASK)
    config = WorkerConfig(log_level="debug", modules_log_level="ERROR")
    _, success = taskyard.run_task(file_name="levels.py", files_path=tmp_path, worker_config=config)
    captured = capsys.readouterr()
    assert success
    assert " DEBUG a debug line" in captured.err and " INFO an info line" in captured.err
    assert "root level ERROR" in captured.out


def test_without_log_levels_the_task_logs_info_and_leaves_root_alone(sdk_env, tmp_path, capsys):
    write(tmp_path, "levels.py", LEVELS_TASK)
    _, success = taskyard.run_task(file_name="levels.py", files_path=tmp_path, worker_config=WorkerConfig())
    captured = capsys.readouterr()
    assert success
    assert "a debug line" not in captured.err and " INFO an info line" in captured.err
    assert "root level WARNING" in captured.out


# -- taskyard.exceptions ----------------------------------------------------------------------------


def test_exceptions_are_the_sdk_classes_under_the_practicus_module_name():
    from taskyard import errors
    from taskyard.exceptions import TaskError

    assert TaskError is errors.TaskError is prt.TaskError
    assert issubclass(TaskError, prt.exceptions.TaskyardError)
    assert all(getattr(prt.exceptions, name) is getattr(errors, name) for name in prt.exceptions.__all__)
    with pytest.raises(TaskError):
        try:
            raise TaskError("task failed")
        except prt.exceptions.InvalidInput:  # not caught here: a TaskError is no InvalidInput
            pytest.fail("wrong class")


# -- WorkerConfig fields ----------------------------------------------------------------------------


def test_practicus_fields_with_no_effect_are_read_and_named_in_one_warning():
    given = {
        "worker_size": "Small",
        "service_type": "cloud_worker",
        "network_protocol": "http",
        "distributed_config": {"job_type": "spark", "worker_count": 2},
        "image_config": {"repo": "x"},
        "bypass_ssl_verification": True,
        "interactive": False,
        "log_level": "info",
        "service_url": "",
    }
    with pytest.warns(NoEffectWarning) as caught:
        config = WorkerConfig.model_validate(given)
    assert len(caught) == 1
    message = str(caught[0].message)
    for name in ("bypass_ssl_verification", "distributed_config", "image_config", "interactive",
                 "network_protocol", "service_type"):  # fmt: skip
        assert name in message
    assert (config.worker_size, config.log_level) == ("Small", "INFO")


def test_log_level_travels_in_additional_params_and_back():
    config = WorkerConfig(log_level="warn", modules_log_level="debug")
    again = WorkerConfig.model_validate_json(config.model_dump_json(exclude_none=True))
    assert (again.log_level, again.modules_log_level) == ("WARNING", "DEBUG")
    assert again.task_env() == {"TASKYARD_LOG_LEVEL": "WARNING", "TASKYARD_MODULES_LOG_LEVEL": "DEBUG"}


def test_a_no_effect_field_inside_additional_params_is_read_too():
    import base64
    import json

    packed = base64.b64encode(json.dumps({"env_variables": {"A": 1}, "interactive": True}).encode()).decode()
    with pytest.warns(NoEffectWarning, match="interactive"):
        config = WorkerConfig.model_validate({"additional_params": packed})
    assert config.env_variables == {"A": 1}


def test_empty_no_effect_fields_warn_nothing_and_unknown_fields_are_still_errors():
    assert WorkerConfig.model_validate({"service_type": "", "image_config": None}) == WorkerConfig()
    with pytest.raises(ValidationError, match="worker_gpus"):
        WorkerConfig.model_validate({"worker_gpus": 1})
    with pytest.raises(ValidationError, match="log_level: log level 'loud'"):
        WorkerConfig(log_level="loud")


# -- worker JSON files beside the task --------------------------------------------------------------

ENV_TASK = "import os\nprint('param', os.environ.get('MY_PARAM'))\n"


def write_worker_json(folder: Path, name: str, value: str) -> None:
    config = WorkerConfig(worker_size="X-Small", env_variables={"MY_PARAM": value})
    write(folder, name, config.model_dump_json(exclude_none=True))


def test_task_worker_json_is_used_over_default_worker_json(sdk_env, tmp_path, capsys):
    write(tmp_path, "task.py", ENV_TASK)
    write_worker_json(tmp_path, "task_worker.json", "from-task-json")
    write_worker_json(tmp_path, "default_worker.json", "from-default-json")
    assert taskyard.run_task(file_name="task.py", files_path=tmp_path)[1]
    assert "param from-task-json" in capsys.readouterr().out


def test_default_worker_json_is_used_by_submit_and_a_given_config_wins(sdk_env, tmp_path, capsys):
    write(tmp_path, "task.py", ENV_TASK)
    write_worker_json(tmp_path, "default_worker.json", "from-default-json")
    task = taskyard.submit("task.py", tmp_path)
    assert task.wait(print_logs=True) is taskyard.TaskStatus.SUCCESS
    assert "param from-default-json" in capsys.readouterr().out
    given = WorkerConfig(env_variables={"MY_PARAM": "given"})
    assert taskyard.run_task(file_name="task.py", files_path=tmp_path, worker_config=given)[1]
    assert "param given" in capsys.readouterr().out


def test_cli_run_reads_config_and_worker_json_beside_the_task(server, monkeypatch, tmp_path):
    write(tmp_path / "project", "task.py", ENV_TASK)
    write_worker_json(tmp_path, "mine.json", "from-config")
    write_worker_json(tmp_path / "project", "task_worker.json", "beside")
    with default_client_of(server, monkeypatch):
        runner = CliRunner()
        beside = runner.invoke(app, ["run", "task.py", "--files", str(tmp_path / "project")])
        chosen = runner.invoke(app, ["run", "task.py", "--files", str(tmp_path / "project"),
                                     "--config", str(tmp_path / "mine.json"), "-e", "OTHER=1"])  # fmt: skip
    assert beside.exit_code == 0 and beside.stdout == "param beside\n", beside.output
    assert chosen.exit_code == 0 and chosen.stdout == "param from-config\n", chosen.output
