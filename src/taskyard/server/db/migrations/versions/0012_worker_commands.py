"""commands to kept workers, in the store: any server of the database hands them and takes their answers

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

from taskyard.server.db.models import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_commands",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("worker_name", sa.String(length=64), nullable=False),
        sa.Column("order", sa.LargeBinary(), nullable=False),
        sa.Column("order_key", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("handed_at", UTCDateTime(), nullable=True),
        sa.Column("answer", sa.LargeBinary(), nullable=True),
        sa.Column("answer_key", sa.String(length=16), nullable=True),
        sa.Column("answered_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_worker_commands_worker", "worker_commands", ["worker_name", "handed_at"], unique=False)
    op.create_index("ix_worker_commands_expires", "worker_commands", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_worker_commands_expires", table_name="worker_commands")
    op.drop_index("ix_worker_commands_worker", table_name="worker_commands")
    op.drop_table("worker_commands")
