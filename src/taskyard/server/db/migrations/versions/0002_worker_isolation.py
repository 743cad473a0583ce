"""workers: whether sandboxed, how limited, which GPUs; longer size names

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sandboxed", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("limits", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("gpus", sa.String(length=255), nullable=True))
        batch_op.alter_column("size", existing_type=sa.String(length=20), type_=sa.String(length=32))


def downgrade() -> None:
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.alter_column("size", existing_type=sa.String(length=32), type_=sa.String(length=20))
        batch_op.drop_column("gpus")
        batch_op.drop_column("limits")
        batch_op.drop_column("sandboxed")
