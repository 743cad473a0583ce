from __future__ import annotations

from fastapi import APIRouter

from taskyard.callbacks import CallbackDelivery, CallbackList, SigningSecret
from taskyard.server.callbacks import delivery, signing
from taskyard.server.routers.deps import PlaneDep, UserDep
from taskyard.server.services import tasks as task_service

router = APIRouter(tags=["callbacks"])


@router.get("/tasks/{task_id}/callbacks", response_model=CallbackList)
def deliveries(task_id: str, plane: PlaneDep, user: UserDep) -> CallbackList:
    """The task's callback URL and every delivery of it, each with its attempts (time, status code, error)."""
    with plane.transaction() as session:
        return delivery.listing(session, task_service.get_task(session, user, task_id))


@router.post("/tasks/{task_id}/callbacks/resend", status_code=202, response_model=CallbackDelivery)
def resend(task_id: str, plane: PlaneDep, user: UserDep) -> CallbackDelivery:
    """Send an ended task's callback again, as a new delivery (with a new delivery id)."""
    with plane.transaction() as session:
        return delivery.resend(session, task_service.get_task(session, user, task_id, for_update=True))


@router.get("/callbacks/signing-secret", response_model=SigningSecret)
def signing_secret(plane: PlaneDep, user: UserDep) -> SigningSecret:
    """The caller's secret for checking the ``X-Taskyard-Signature`` of its tasks' callbacks."""
    with plane.transaction() as session:
        return SigningSecret(secret=signing.secret_of(session, plane.vault, user.id))
