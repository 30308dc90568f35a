"""asks: an approval request becomes one kind of ask (typed answers, segregation of duties),
and personal codes are no longer stored in any form (a counter per answerer and ask instead)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=24)


STATUS = ("open", "approved", "rejected", "cancelled")
OUTCOME = ("approve", "reject")


def upgrade() -> None:
    with op.batch_alter_table("approval_request", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=80), server_default="approval", nullable=False)
        )
        batch_op.add_column(sa.Column("excluded", sa.JSON(), nullable=True))
        batch_op.alter_column(
            "status",
            existing_type=_enum("approval_status", *STATUS),
            type_=_enum("approval_status", *STATUS, "answered"),
            existing_nullable=False,
        )
    op.execute("UPDATE approval_request SET excluded = '{}'")
    with op.batch_alter_table("approval_request", schema=None) as batch_op:
        batch_op.alter_column("excluded", existing_type=sa.JSON(), nullable=False)

    with op.batch_alter_table("decision", schema=None) as batch_op:
        batch_op.add_column(sa.Column("answer", sa.JSON(), nullable=True))
        batch_op.alter_column(
            "outcome",
            existing_type=_enum("outcome", *OUTCOME),
            type_=_enum("outcome", *OUTCOME, "answer"),
            existing_nullable=False,
        )

    # A stored hash of a ~50-bit code could be cracked offline: it goes. Codes handed out before
    # this migration stop working; the next reminder carries the new one.
    with op.batch_alter_table("approval_approver", schema=None) as batch_op:
        batch_op.drop_column("code_hash")
        batch_op.add_column(
            sa.Column("code_counter", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("wrong_codes", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("ui_locked_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("approval_approver", schema=None) as batch_op:
        batch_op.drop_column("ui_locked_at")
        batch_op.drop_column("wrong_codes")
        batch_op.drop_column("code_counter")
        batch_op.add_column(
            sa.Column("code_hash", sa.String(length=64), server_default="", nullable=False)
        )
    with op.batch_alter_table("decision", schema=None) as batch_op:
        batch_op.alter_column(
            "outcome",
            existing_type=_enum("outcome", *OUTCOME, "answer"),
            type_=_enum("outcome", *OUTCOME),
            existing_nullable=False,
        )
        batch_op.drop_column("answer")
    with op.batch_alter_table("approval_request", schema=None) as batch_op:
        batch_op.alter_column(
            "status",
            existing_type=_enum("approval_status", *STATUS, "answered"),
            type_=_enum("approval_status", *STATUS),
            existing_nullable=False,
        )
        batch_op.drop_column("excluded")
        batch_op.drop_column("kind")
