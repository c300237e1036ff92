"""story generation: why a story failed, and pages left without usable text

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("books") as batch:
        batch.add_column(sa.Column("story_error", sa.Text(), nullable=True))
    with op.batch_alter_table("pages") as batch:
        batch.add_column(sa.Column("text_problem", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pages") as batch:
        batch.drop_column("text_problem")
    with op.batch_alter_table("books") as batch:
        batch.drop_column("story_error")
