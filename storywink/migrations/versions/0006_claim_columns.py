"""claim columns: the claim's workflow id and run chain, named for what they hold

`illustration_workflow_id` / `illustration_run_id` hold a story run's claim too. A book
mid-run keeps its claim: the columns are renamed in place (ALTER TABLE … RENAME COLUMN, on
SQLite too), never through a batch copy of `books`, whose DROP would cascade to its pages.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 19:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RENAMES = (
    ("illustration_workflow_id", "claim_workflow_id"),
    ("illustration_run_id", "claim_run_id"),
)


def upgrade() -> None:
    for old, new in RENAMES:
        op.alter_column("books", old, new_column_name=new)


def downgrade() -> None:
    for old, new in RENAMES:
        op.alter_column("books", new, new_column_name=old)
