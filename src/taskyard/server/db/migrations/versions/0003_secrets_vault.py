"""secrets: the vault's sealed values, personal and shared

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

import taskyard.server.db.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secrets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("created_at", taskyard.server.db.models.UTCDateTime(), nullable=False),
        sa.Column("updated_at", taskyard.server.db.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "name", name="uq_secrets_user_name"),
    )
    with op.batch_alter_table("secrets", schema=None) as batch_op:
        batch_op.create_index("ix_secrets_key_id", ["key_id"], unique=False)
        batch_op.create_index(
            "uq_secrets_shared_name",
            ["name"],
            unique=True,
            sqlite_where=sa.text("user_id IS NULL"),
            postgresql_where=sa.text("user_id IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("secrets", schema=None) as batch_op:
        batch_op.drop_index("uq_secrets_shared_name")
        batch_op.drop_index("ix_secrets_key_id")
    op.drop_table("secrets")
