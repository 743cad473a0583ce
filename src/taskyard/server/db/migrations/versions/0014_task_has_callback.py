"""whether a task has a callback: its ending then need not look for one

Revision ID: 0014
Revises: 0013

An ALTER TABLE, not a batch: on SQLite a batch copies the table and drops the old one, and the
drop would take the rows that reference tasks with it (their foreign keys cascade).
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("has_callback", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute("UPDATE tasks SET has_callback = true WHERE id IN (SELECT task_id FROM task_callbacks)")


def downgrade() -> None:
    op.drop_column("tasks", "has_callback")
