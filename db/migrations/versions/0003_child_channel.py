"""child channel: left messages, return codes, quick exit

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 17:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("mode", sa.String(length=16), nullable=False, server_default="chat")
        )
        batch_op.add_column(sa.Column("return_code_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("quick_exit_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint("uq_conversations_return_code_hash", ["return_code_hash"])
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.alter_column("mode", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_constraint("uq_conversations_return_code_hash", type_="unique")
        batch_op.drop_column("quick_exit_at")
        batch_op.drop_column("return_code_hash")
        batch_op.drop_column("mode")
