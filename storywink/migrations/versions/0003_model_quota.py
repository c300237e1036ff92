"""model quota: the image model's shared limiter

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_quota",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("rate", sa.Float(), nullable=True),
        sa.Column("overrun", sa.Float(), nullable=True),
        sa.Column("next_free", sa.Float(), nullable=False),
        sa.Column("hold_until", sa.Float(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("far", sa.Boolean(), nullable=False),
        sa.Column("early_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("model_quota")
