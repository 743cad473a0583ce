"""workers made on request (create_worker): their config, whether still to be started, their end of life

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

from taskyard.server.db.models import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("config", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("requested", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("expires_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
        batch_op.drop_column("requested")
        batch_op.drop_column("config")
