"""transfers: offering a chat to a named colleague

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 18:05:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("transfer_to_user_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("transfer_from_user_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("transfer_note", sa.String(length=500), nullable=True))
        batch_op.add_column(
            sa.Column("transfer_offered_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_foreign_key(
            "fk_conversations_transfer_to_user_id", "staff_users", ["transfer_to_user_id"], ["id"]
        )
        batch_op.create_foreign_key(
            "fk_conversations_transfer_from_user_id",
            "staff_users",
            ["transfer_from_user_id"],
            ["id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_constraint("fk_conversations_transfer_from_user_id", type_="foreignkey")
        batch_op.drop_constraint("fk_conversations_transfer_to_user_id", type_="foreignkey")
        batch_op.drop_column("transfer_offered_at")
        batch_op.drop_column("transfer_note")
        batch_op.drop_column("transfer_from_user_id")
        batch_op.drop_column("transfer_to_user_id")
