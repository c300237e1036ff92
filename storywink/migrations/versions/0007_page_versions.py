"""page versions: a page's picture has a version, a parent's change request, a redraw's problem

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 22:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable-free with a server default: the previous release's workers, which do not
    # know the columns, keep inserting and updating pages while they drain.
    op.add_column(
        "pages",
        sa.Column("image_version", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column("pages", sa.Column("change_request", sa.Text(), nullable=True))
    op.add_column("pages", sa.Column("redraw_problem", sa.Text(), nullable=True))
    op.add_column("pages", sa.Column("redraw_ask_id", sa.String(100), nullable=True))


def downgrade() -> None:
    op.drop_column("pages", "redraw_ask_id")
    op.drop_column("pages", "redraw_problem")
    op.drop_column("pages", "change_request")
    op.drop_column("pages", "image_version")
