"""Commands to a kept worker: run one command there, open a Jupyter server or a shell in it."""

from __future__ import annotations

from fastapi import APIRouter

from taskyard.models import ExecRequest, ExecResult, NotebookServerInfo, ShellDoorInfo
from taskyard.server.routers.deps import PlaneDep, UserDep
from taskyard.server.services import worker_commands as command_service

router = APIRouter(prefix="/workers", tags=["workers"])
NOTEBOOK_WAIT = 180.0  # a Jupyter server's first start (imports, extensions) on a busy host
ANSWER_WAIT = 30.0  # beyond a command's own time


@router.post("/{name}/exec", response_model=ExecResult)
async def exec_command(name: str, body: ExecRequest, plane: PlaneDep, user: UserDep) -> ExecResult:
    """Run ``argv`` in the worker's sandbox, in its task's folder and environment; its output and exit code."""
    worker = await plane.run(lambda s: command_service.reachable(s, user, name))
    order = {"kind": "exec", **body.model_dump()}
    return ExecResult(**await plane.commands.ask(worker, order, body.timeout + ANSWER_WAIT))


@router.post("/{name}/notebook", response_model=NotebookServerInfo)
async def open_notebook(name: str, plane: PlaneDep, user: UserDep) -> NotebookServerInfo:
    """Start (or find) the worker's Jupyter server; its URL, with its token."""
    worker = await plane.run(lambda s: command_service.reachable(s, user, name))
    return NotebookServerInfo(**await plane.commands.ask(worker, {"kind": "notebook"}, NOTEBOOK_WAIT))


@router.post("/{name}/shell", response_model=ShellDoorInfo)
async def open_shell(name: str, plane: PlaneDep, user: UserDep, tty: bool = True) -> ShellDoorInfo:
    """Open a door to a shell in the worker: an address that lets in one connection bearing the key."""
    worker = await plane.run(lambda s: command_service.reachable(s, user, name))
    return ShellDoorInfo(**await plane.commands.ask(worker, {"kind": "shell", "tty": tty}, ANSWER_WAIT))
