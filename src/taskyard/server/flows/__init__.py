"""Flow runs owned by the control plane: their store, service, router and the driver that advances them."""

from __future__ import annotations

from sqlalchemy.orm import Session

from taskyard.models import TaskSpec
from taskyard.server.db.models import TaskRow, UserRow
from taskyard.server.flows.driver import FlowDriver
from taskyard.server.plane import Plane
from taskyard.server.services import tasks as task_service


def make_driver(plane: Plane) -> FlowDriver:
    """The plane's flow driver: its tasks are created with the same checks as submitted ones."""

    def create_task(session: Session, user: UserRow, spec: TaskSpec) -> TaskRow:
        task, _ = task_service.create_task(
            session, user, spec, bundle_present=True, images=plane.backend.images, sizes=plane.config.sizes,
            capacity=plane.backend.capacity(),
        )
        return task

    return FlowDriver(plane.sessions, plane.notifier, plane.storage, create_task)
