"""private images: pages keep asset ids, every book a salt for its assets' names

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 23:30:00

Pages get `original_asset_id` / `generated_asset_id` (the ids of private assets) beside the
URL columns, which keep the public URLs of images stored before (the previous release's
workers read and write them while they drain, and what is public stays readable until an
operator moves it: `storywink images privatize`). A URL of local storage (`file://…`),
never public, names its asset: it is copied into the asset id column here. Every book gets
a random `asset_salt`, so its later assets get names that give away nothing.
"""

import re
import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The tail of a local-storage URL: storywink/<book>/<originals|generated>/<name>.png
_LOCAL_ASSET = re.compile(
    r"/(storywink/[A-Za-z0-9_-]+/(?:originals|generated)/[A-Za-z0-9_-]+)\.png$"
)


def upgrade() -> None:
    op.add_column("books", sa.Column("asset_salt", sa.String(length=64), nullable=True))
    op.add_column("pages", sa.Column("original_asset_id", sa.Text(), nullable=True))
    op.add_column("pages", sa.Column("generated_asset_id", sa.Text(), nullable=True))
    connection = op.get_bind()
    books = sa.table("books", sa.column("id", sa.String), sa.column("asset_salt", sa.String))
    book_ids = connection.execute(sa.select(books.c.id)).scalars().all()
    if book_ids:
        connection.execute(
            books.update().where(books.c.id == sa.bindparam("book_id")),
            [{"book_id": book_id, "asset_salt": secrets.token_hex(16)} for book_id in book_ids],
        )
    pages = sa.table(
        "pages",
        sa.column("id", sa.String),
        sa.column("original_image_url", sa.Text),
        sa.column("generated_image_url", sa.Text),
        sa.column("original_asset_id", sa.Text),
        sa.column("generated_asset_id", sa.Text),
    )
    for url_column, id_column in (
        ("original_image_url", "original_asset_id"),
        ("generated_image_url", "generated_asset_id"),
    ):
        rows = connection.execute(
            sa.select(pages.c.id, pages.c[url_column]).where(pages.c[url_column].like("file://%"))
        ).all()
        moved = [
            {"page_id": page_id, id_column: match.group(1)}
            for page_id, url in rows
            if (match := _LOCAL_ASSET.search(url))
        ]
        if moved:
            connection.execute(pages.update().where(pages.c.id == sa.bindparam("page_id")), moved)


def downgrade() -> None:
    op.drop_column("pages", "generated_asset_id")
    op.drop_column("pages", "original_asset_id")
    op.drop_column("books", "asset_salt")
