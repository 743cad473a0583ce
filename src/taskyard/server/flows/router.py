"""The flow runs API (``/api/v1/flows``): thin, over :mod:`taskyard.server.flows.service`."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session

from taskyard import settings
from taskyard.server.flows import service
from taskyard.server.routers.deps import PlaneDep, UserDep
from taskyard.server.storage import bundle_key
from taskyard.server.uploads import check_bundle
from taskyard.workflows.models import FlowInfo, FlowPage, FlowSpec, FlowStatus

router = APIRouter(prefix="/flows", tags=["flows"])
MAX_WAIT = 60.0


@router.post("", status_code=201, response_model=FlowInfo)
def submit(spec: FlowSpec, plane: PlaneDep, user: UserDep, response: Response) -> FlowInfo:
    present = plane.storage.exists(bundle_key(user.id, spec.bundle_sha256))
    with plane.transaction() as session:
        run, created = service.create_run(session, user, spec, bundle_present=present)
        info = service.to_info(session, run)
    if not created:
        response.status_code = 200
    return info


@router.put("/{run_id}/bundle", response_model=FlowInfo)
async def upload_bundle(run_id: str, request: Request, plane: PlaneDep, user: UserDep) -> FlowInfo:
    run = await plane.run(lambda s: service.get_run(s, user, run_id))
    sha = FlowSpec.model_validate_json(run.spec).bundle_sha256
    key = bundle_key(user.id, sha)
    if not plane.storage.exists(key):
        declared = FlowSpec.model_validate_json(run.spec).bundle_size
        check = partial(check_bundle, declared=declared, max_unpack=settings.max_unpack_bytes())
        await plane.storage.put_stream(
            key, request.stream(), max_bytes=settings.max_upload_bytes(), sha256=sha, check=check
        )

    def mark(session: Session) -> FlowInfo:
        row = service.get_run(session, user, run_id, for_update=True)
        service.bundle_uploaded(session, row)
        return service.to_info(session, row)

    return await plane.run(mark)


@router.get("", response_model=FlowPage)
def list_runs(plane: PlaneDep, user: UserDep, limit: int = 50) -> FlowPage:
    with plane.transaction() as session:
        runs = service.list_runs(session, user, limit=max(1, min(limit, 500)))
        return FlowPage(flows=[service.to_info(session, run) for run in runs])


@router.get("/{run_id}", response_model=FlowInfo)
def show(run_id: str, plane: PlaneDep, user: UserDep) -> FlowInfo:
    with plane.transaction() as session:
        return service.to_info(session, service.get_run(session, user, run_id))


@router.get("/{run_id}/wait", response_model=FlowInfo)
async def wait(run_id: str, plane: PlaneDep, user: UserDep, timeout: float = 30, changed_from: str = "") -> FlowInfo:
    """The run once it has ended (or differs from the ``changed_from`` digest), or after ``timeout`` seconds."""

    async def check() -> tuple[bool, FlowInfo]:
        info = await plane.run(lambda s: service.to_info(s, service.get_run(s, user, run_id)))
        moved = bool(changed_from) and info.digest() != changed_from
        return FlowStatus(info.status).is_terminal() or moved, info

    return await plane.notifier.poll(service.flow_key(run_id), check, min(timeout, MAX_WAIT))


@router.post("/{run_id}/kill", response_model=FlowInfo)
def kill(run_id: str, plane: PlaneDep, user: UserDep) -> FlowInfo:
    with plane.transaction() as session:
        return service.to_info(session, service.request_kill(session, user, run_id))


@router.post("/{run_id}/rerun", status_code=201, response_model=FlowInfo)
def rerun(run_id: str, plane: PlaneDep, user: UserDep) -> FlowInfo:
    with plane.transaction() as session:
        return service.to_info(session, service.rerun(session, user, run_id))
