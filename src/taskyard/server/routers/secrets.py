"""The vault: a user's secrets and the shared ones. Values go in and come out here; lists never hold them."""

from __future__ import annotations

from fastapi import APIRouter, Response

from taskyard.models import KeyRotation, SecretInfo, SecretPut, SecretValue
from taskyard.server.routers.deps import AdminDep, PlaneDep, UserDep
from taskyard.server.services import secrets as secret_service

router = APIRouter(prefix="/secrets", tags=["secrets"])


@router.get("", response_model=list[SecretInfo])
def list_secrets(plane: PlaneDep, user: UserDep) -> list[SecretInfo]:
    """The caller's own secrets and the shared ones: names and ages, never values."""
    with plane.transaction() as session:
        return [secret_service.to_info(row) for row in secret_service.list_secrets(session, user)]


@router.post("/rotate-key", response_model=KeyRotation)
def rotate_key(plane: PlaneDep, admin: AdminDep) -> KeyRotation:
    """Encrypt every secret again under a new key, which then replaces the key file (admins only)."""
    return secret_service.rotate_key(plane.sessions, plane.vault)


@router.put("/{name}", response_model=SecretInfo, responses={201: {"model": SecretInfo, "description": "made anew"}})
def put_secret(
    name: str, body: SecretPut, plane: PlaneDep, user: UserDep, response: Response, shared: bool = False
) -> SecretInfo:
    """Create (201) or replace (200) the caller's secret ``name``; with ``shared``, the shared one (admins)."""
    with plane.transaction() as session:
        row, created = secret_service.put_secret(session, plane.vault, user, name, body.value, shared=shared)
        response.status_code = 201 if created else 200
        return secret_service.to_info(row)


@router.get("/{name}", response_model=SecretValue)
def get_secret(name: str, plane: PlaneDep, user: UserDep, shared: bool = False) -> SecretValue:
    """The caller's secret ``name``, else the shared one of that name (only that one with ``shared``)."""
    with plane.transaction() as session:
        row, value = secret_service.get_secret(session, plane.vault, user, name, shared=shared)
        return secret_service.to_value(row, value)


@router.delete("/{name}", status_code=204)
def delete_secret(name: str, plane: PlaneDep, user: UserDep, shared: bool = False) -> None:
    """Delete the caller's secret ``name``; with ``shared``, the shared one (admins)."""
    with plane.transaction() as session:
        secret_service.delete_secret(session, user, name, shared=shared)
