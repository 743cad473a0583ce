"""API schemas of flow runs, shared by the client and the server (pydantic)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import Enum

from pydantic import BaseModel, Field, field_validator, model_validator

from taskyard.config import WorkerConfig
from taskyard.models import check_file_name, check_id
from taskyard.workflows import dag


class FlowStatus(str, Enum):
    WAITING_FOR_INPUT = "waiting_for_input"  # its files are not uploaded yet
    RUNNING = "running"
    KILLING = "killing"  # killed: its running tasks are being stopped
    SUCCESS = "success"
    FAILED = "failed"
    KILLED = "killed"

    @property
    def alias(self) -> str:
        return self.value.replace("_", " ").title()

    def is_terminal(self) -> bool:
        return self in (FlowStatus.SUCCESS, FlowStatus.FAILED, FlowStatus.KILLED)


class FlowTaskState(str, Enum):
    """Where a task of a flow stands; while it has a task going, that task's own status is shown."""

    WAITING = "waiting"  # for its upstream tasks (or a free place, under max_parallel)
    ACTIVE = "active"  # a taskyard task of it is going
    SUCCESS = "success"
    FAILED = "failed"  # its last attempt did not succeed
    UPSTREAM_FAILED = "upstream_failed"
    CANCELLED = "cancelled"  # the run was killed before it started

    @property
    def alias(self) -> str:
        return self.value.replace("_", " ").title()

    def is_done(self) -> bool:
        return self not in (FlowTaskState.WAITING, FlowTaskState.ACTIVE)


class FlowSpec(BaseModel):
    """What a client submits: the flow, the file of each of its names, their worker configs, the folder."""

    flow_id: str | None = None  # given by the client: submitting it twice gives the same run
    dag_flow: str
    task_files: dict[str, str]  # task name -> its file in the folder
    worker_configs: dict[str, WorkerConfig] = Field(default_factory=dict)  # task name -> its merged config
    max_parallel: int | None = Field(default=None, ge=1)  # tasks of the run going at once (None: no bound)
    retries: int = Field(default=0, ge=0, le=20)  # attempts after the first, for each task
    pool: str = "default"
    bundle_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bundle_size: int = Field(ge=0)

    _flow_id = field_validator("flow_id")(lambda v: None if v is None else check_id(v, "flow_id"))
    _pool = field_validator("pool")(lambda v: check_id(v, "pool"))

    @field_validator("task_files")
    @classmethod
    def _files(cls, value: dict[str, str]) -> dict[str, str]:
        for file_name in value.values():
            check_file_name(file_name)
        return value

    @model_validator(mode="after")
    def _flow(self) -> FlowSpec:
        graph = dag.parse(self.dag_flow)
        files = dag.task_files(graph, self.task_files.values())
        if set(self.task_files) != set(graph.names) or files != self.task_files:
            raise ValueError("task_files must name the file of each task of the flow, and no other")
        unknown = sorted(set(self.worker_configs) - set(graph.names))
        if unknown:
            raise ValueError(f"worker_configs has names that are not tasks of the flow: {', '.join(unknown)}")
        return self

    def graph(self) -> dag.Dag:
        return dag.parse(self.dag_flow)


class FlowTaskInfo(BaseModel):
    name: str
    file_name: str
    upstream: list[str]
    state: str  # "Waiting", the task's own status alias, "Upstream Failed" or "Cancelled"
    task_id: str | None = None
    attempt: int = 0  # of this flow task: 1 for the first run of it, 2 for its first retry...
    reused: bool = False  # a rerun took this success from the run it reruns
    reason: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class FlowInfo(BaseModel):
    id: str
    status: FlowStatus
    alias: str
    dag_flow: str
    user: str
    reason: str | None = None
    max_parallel: int | None = None
    retries: int = 0
    rerun_of: str | None = None
    created_at: datetime
    finished_at: datetime | None = None
    upload_required: bool = False
    tasks: list[FlowTaskInfo] = Field(default_factory=list)

    def digest(self) -> str:
        """A short digest of where the run and its tasks stand, for waiting until it changes."""
        states = [self.status.value] + [f"{task.name}={task.state}/{task.attempt}" for task in self.tasks]
        return hashlib.sha256("|".join(states).encode()).hexdigest()[:16]


class FlowPage(BaseModel):
    flows: list[FlowInfo]
