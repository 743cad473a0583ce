"""The Task Runner API's schemas: ``POST /api/v1/task-runner`` (the seed's ``TaskRunnerRequest``).

Where the task's files come from:

- without ``files``: from the request's git repositories, cloned into an empty task folder, each
  into its ``local_path`` (else the repository's name). ``task_file_name`` is a path in the first
  repository's checkout (``deployer_task.py`` runs as ``<repo>/deployer_task.py``), unless it
  starts with the folder of one of them (``<local_path>/<file>``), which is taken as it is;
- with ``files``: from a task folder uploaded before, named by its bundle hash (64 hex digits), or
  pushed by name with ``taskyard folders push NAME DIR``; ``task_file_name`` is a path in it. Git
  repositories, if any, are cloned into it as well.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, field_validator

from taskyard import callbacks
from taskyard.config import WorkerConfig
from taskyard.models import check_file_name, check_id


class TaskRunnerRequest(BaseModel):
    task_id: str
    """Unique task id (1222345, 23erd-rt56-tty67-34er5 ...)"""

    task_file_name: str
    """deployer_task.py, task1.sh... (*.py, *.sh files)"""

    worker_config: WorkerConfig
    """WorkerConfig with or without a GitConfig"""

    callback_url: str | None = Field(default=None, max_length=2048)
    """Callback URL to be called after the task finishes"""

    callback_url_token: str | None = Field(default=None, max_length=4096, repr=False)
    """Optional Callback URL security (bearer) token"""

    terminate_on_completion: bool = True
    """Determines whether the task runner should terminate on completion"""

    files: str | None = Field(default=None, max_length=64)
    """Optional: the task folder, by its bundle hash or by the name it was pushed with; default: git only"""

    model_config = {
        "use_attribute_docstrings": True,
        "json_schema_extra": {
            "examples": [
                {
                    "task_id": "23erd-rt56",
                    "task_file_name": "deployer_task.py",
                    "worker_config": {
                        "worker_size": "small",
                        "personal_secrets": ["git_secret"],
                        "git_configs": [
                            {"remote_url": "https://github.com/example/repo.git", "secret_name": "git_secret"}
                        ],
                    },
                    "callback_url": "https://example.com/callback",
                    "terminate_on_completion": True,
                }
            ]
        },
    }

    _task_id = field_validator("task_id")(lambda v: check_id(v, "task_id"))
    _task_file_name = field_validator("task_file_name")(check_file_name)
    _callback_url = field_validator("callback_url")(lambda v: None if v is None else callbacks.check_url(v))
    _callback_token = field_validator("callback_url_token")(callbacks.check_token)


class TaskRunnerResponse(BaseModel):
    success: bool
    """True or False"""

    message: str
    """Any info or error message"""

    task_id: str | None = None
    """The task's id, when it was started (or had been, for a repeated task_id)"""

    model_config = {
        "use_attribute_docstrings": True,
        "json_schema_extra": {
            "examples": [
                {"success": True, "message": "Started task 23erd-rt56", "task_id": "23erd-rt56"},
                {"success": False, "message": "worker_config.worker_size: unknown worker size 'huge'"},
            ]
        },
    }


class FolderInfo(BaseModel):
    """A task folder pushed by name; a Task Runner request names it in ``files``."""

    name: str
    bundle_sha256: str
    bundle_size: int
    updated_at: datetime
