"""model call ledger and budgets: every paid model call, and what each budget holds

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 19:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_calls",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("book_id", sa.String(64), nullable=False),
        sa.Column("page_id", sa.String(64), nullable=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("workflow_run_id", sa.String(64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("budget_day", sa.String(10), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("output_text_tokens", sa.Integer(), nullable=True),
        sa.Column("output_image_tokens", sa.Integer(), nullable=True),
        sa.Column("thought_tokens", sa.Integer(), nullable=True),
        sa.Column("total_tokens", sa.Integer(), nullable=True),
        sa.Column("price_read_on", sa.String(10), nullable=True),
        sa.Column("expected_micro_usd", sa.BigInteger(), nullable=False),
        sa.Column("reserved_micro_usd", sa.BigInteger(), nullable=False),
        sa.Column("cost_micro_usd", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_model_calls_book_id", "model_calls", ["book_id"])
    op.create_index("ix_model_calls_page_id", "model_calls", ["page_id"])
    op.create_index("ix_model_calls_user_id", "model_calls", ["user_id"])
    op.create_index("ix_model_calls_started_at", "model_calls", ["started_at"])
    op.create_table(
        "cost_budgets",
        sa.Column("scope", sa.String(100), primary_key=True),
        sa.Column("charged_micro_usd", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cost_budgets")
    op.drop_index("ix_model_calls_started_at", "model_calls")
    op.drop_index("ix_model_calls_user_id", "model_calls")
    op.drop_index("ix_model_calls_page_id", "model_calls")
    op.drop_index("ix_model_calls_book_id", "model_calls")
    op.drop_table("model_calls")
