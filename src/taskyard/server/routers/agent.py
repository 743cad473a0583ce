"""The agent protocol: what a worker's agent calls. Its token reaches only its own worker's tasks."""

from __future__ import annotations

import base64
import contextlib

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from taskyard import settings
from taskyard.errors import NotFound
from taskyard.models import AgentAck, AgentCommandAnswer, AgentCommands, AgentEvent, AgentFinish, AgentLogs, NextTask
from taskyard.server.notifier import assignment_key, worker_key
from taskyard.server.routers.answers import answer as json_answer
from taskyard.server.routers.deps import PlaneDep, WorkerDep
from taskyard.server.routers.params import Seconds
from taskyard.server.services import agent as agent_service
from taskyard.server.services import worker_commands as command_service
from taskyard.server.services import worker_output
from taskyard.server.services.worker_commands import Sealed
from taskyard.server.storage import bundle_key, outputs_key
from taskyard.status import WorkerStatus

router = APIRouter(prefix="/agent", tags=["agent"])  # async calls; transactions on the plane's database threads
MAX_WAIT = 30.0


_worker = agent_service.live_worker


async def hung_up(request: Request) -> None:
    """Return once the caller has hung up (its agent has ended, say). These calls have no body to keep."""
    with contextlib.suppress(Exception):  # a connection that fails is as gone
        while (await request.receive())["type"] != "http.disconnect":
            pass


@router.get("/next", response_model=NextTask)
async def next_task(request: Request, plane: PlaneDep, worker: WorkerDep, wait: Seconds = 0) -> Response:
    """The next task for this worker, held up to ``wait`` seconds until there is one."""

    async def check() -> tuple[bool, NextTask]:
        found = await plane.run(lambda s: agent_service.next_task(s, _worker(s, worker), plane.vault))
        return found is not None, found or NextTask()

    answer = await plane.notifier.poll(assignment_key(worker), check, min(wait, MAX_WAIT), lambda: hung_up(request))
    if answer.task is not None and answer.task.bundle_key is not None:
        path = plane.storage.path(answer.task.bundle_key)
        if path.stat().st_size <= agent_service.INLINE_BUNDLE:  # its measured size: the declared one may lie
            answer.task.bundle = base64.b64encode(path.read_bytes()).decode()
    return json_answer(answer)


@router.post("/heartbeat", response_model=AgentCommands)
async def heartbeat(request: Request, plane: PlaneDep, worker: WorkerDep, wait: Seconds = 0) -> Response:
    """Records that the agent is alive; held up to ``wait`` seconds until there is an order for it."""

    def orders_in(session: Session) -> tuple[AgentCommands, list[Sealed]]:
        return agent_service.commands(session, _worker(session, worker)), command_service.hand(session, worker)

    async def check() -> tuple[bool, AgentCommands]:
        nothing = await plane.read(lambda s: agent_service.quiet(s, worker))
        if nothing is not None:
            return False, nothing
        orders, sealed = await plane.run(orders_in)  # something to hand or to write
        orders.commands = await plane.commands.orders(sealed)
        return bool(orders.kill) or orders.terminate or bool(orders.commands), orders

    # Answer well within the heartbeat timeout: the answer is what records that the agent lives.
    longest = settings.heartbeat_timeout() / 3
    orders = await plane.notifier.poll(worker_key(worker), check, min(wait, longest), lambda: hung_up(request))
    orders.servers = plane.agent_urls()  # so that its agent knows whom to call should this server die
    return json_answer(orders)


@router.get("/tasks/{task_id}/bundle")
async def bundle(task_id: str, plane: PlaneDep, worker: WorkerDep) -> FileResponse:
    def key(session: Session) -> str:
        task = agent_service.own_task(session, _worker(session, worker), task_id)
        return bundle_key(task.user_id, task.bundle_sha256)

    return FileResponse(plane.storage.path(await plane.run(key)), media_type="application/gzip")


@router.post("/tasks/{task_id}/events", response_model=AgentAck)
async def event(task_id: str, body: AgentEvent, plane: PlaneDep, worker: WorkerDep) -> Response:
    kill = await plane.run(lambda s: agent_service.event(s, _worker(s, worker), task_id, body))
    return json_answer(AgentAck(acked=0, kill=kill))


@router.post("/tasks/{task_id}/logs", response_model=AgentAck)
async def logs(task_id: str, body: AgentLogs, plane: PlaneDep, worker: WorkerDep) -> Response:
    acked, kill = await plane.run(lambda s: agent_service.append_logs(s, _worker(s, worker), task_id, body))
    return json_answer(AgentAck(acked=acked, kill=kill))


@router.post("/tasks/{task_id}/worker-log", response_model=AgentAck)
def worker_log(task_id: str, body: AgentLogs, plane: PlaneDep, worker: WorkerDep) -> AgentAck:
    """Output of a task run with capture_task_output=False: into its worker's own log, not the task's."""
    with plane.transaction() as session:
        kill = agent_service.may_log(session, _worker(session, worker), task_id)
    return AgentAck(acked=worker_output.append(plane.storage, worker, task_id, body.chunks), kill=kill)


@router.put("/tasks/{task_id}/outputs")
async def upload_outputs(task_id: str, request: Request, plane: PlaneDep, worker: WorkerDep, partial: bool = False):
    task = await plane.run(lambda s: agent_service.own_task(s, _worker(s, worker), task_id))
    key = outputs_key(task_id, task.attempt, partial)
    size = await plane.storage.put_stream(key, request.stream(), max_bytes=settings.max_outputs_bytes())
    await plane.run(lambda s: agent_service.outputs_stored(s, _worker(s, worker), task_id, key, size, partial))
    return {"size": size, "partial": partial}


@router.post("/tasks/{task_id}/finish", response_model=AgentAck)
async def finish(task_id: str, body: AgentFinish, plane: PlaneDep, worker: WorkerDep) -> Response:
    def apply(session: Session) -> AgentAck:
        row = _worker(session, worker)
        task = agent_service.finish(session, row, task_id, body)
        return AgentAck(acked=task.log_seq, terminate=row.status != WorkerStatus.RUNNING.value)

    return json_answer(await plane.run(apply))


@router.post("/commands/{command_id}")
async def command_answer(command_id: str, body: AgentCommandAnswer, plane: PlaneDep, worker: WorkerDep) -> dict:
    """The agent's answer to a command sent to its worker (see taskyard.server.worker_commands)."""
    if not await plane.commands.answer(worker, command_id, body.model_dump()):
        raise NotFound(f"worker {worker} has no command {command_id!r} waiting")
    return {}
