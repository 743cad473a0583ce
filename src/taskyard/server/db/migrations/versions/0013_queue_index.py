"""an index on the queue: the scheduler's next tasks of a pool, queue positions, queued tasks with a worker

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_tasks_queue", "tasks", ["status", "worker_name", "pool", "created_at", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_queue", table_name="tasks")
