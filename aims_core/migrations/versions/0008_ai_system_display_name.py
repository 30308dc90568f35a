"""ai system: a display name (any text) beside the key in `name`

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Added nullable, filled from the key (what every existing system was called), then required.
    with op.batch_alter_table("ai_system", schema=None) as batch_op:
        batch_op.add_column(sa.Column("display_name", sa.String(length=200), nullable=True))
    op.execute("UPDATE ai_system SET display_name = name")
    with op.batch_alter_table("ai_system", schema=None) as batch_op:
        batch_op.alter_column("display_name", existing_type=sa.String(length=200), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("ai_system", schema=None) as batch_op:
        batch_op.drop_column("display_name")
