"""idle page poll: which worker keeps the fleet's one page poll waiting while it is idle

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 15:00:00

`model_quota` gets `idle_poller` (the worker, with its version, whose page poll waits on an
idle queue) and `idle_poll_renewed` (when it last said it was alive): storywink.quota.
idle_poll. Both nullable: the previous release's workers, which never read them, keep
working beside this one's while they drain.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("model_quota", sa.Column("idle_poller", sa.String(length=300), nullable=True))
    op.add_column("model_quota", sa.Column("idle_poll_renewed", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("model_quota", "idle_poll_renewed")
    op.drop_column("model_quota", "idle_poller")
