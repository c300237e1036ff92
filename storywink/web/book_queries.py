"""The database reads of the web backend, always scoped to the caller's account: another
parent's book is not found, exactly like a book that does not exist."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, selectinload

from storywink.book.refusals import BookNotFound
from storywink.db.models import Book


def owned_book(session: Session, book_id: str, user_id: str) -> Book:
    """The book with its pages, detached, if it belongs to `user_id`; else `BookNotFound`."""
    book = session.scalars(
        select(Book)
        .where(Book.id == book_id, Book.user_id == user_id)
        .options(selectinload(Book.pages))
    ).one_or_none()
    if book is None:
        raise BookNotFound(book_id)
    session.expunge_all()
    return book


def check_owner(session: Session, book_id: str, user_id: str) -> None:
    """`BookNotFound` unless the book belongs to `user_id`."""
    found = session.scalar(select(Book.id).where(Book.id == book_id, Book.user_id == user_id))
    if found is None:
        raise BookNotFound(book_id)


@dataclass(frozen=True)
class Cursor:
    """Where a page of the list ended: the last book's creation time and id."""

    created_at: datetime
    book_id: str

    def encode(self) -> str:
        raw = f"{self.created_at.isoformat()}|{self.book_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> Cursor:
        """Raises ValueError for anything this did not encode."""
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            moment, book_id = raw.split("|", 1)
            return cls(datetime.fromisoformat(moment), book_id)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ValueError("not a cursor this API returned") from None


def books_of(
    session: Session, user_id: str, limit: int, after: Cursor | None
) -> tuple[list[Book], Cursor | None]:
    """The account's books, newest first, `limit` at a time, with pages loaded."""
    query = (
        select(Book)
        .where(Book.user_id == user_id)
        .options(selectinload(Book.pages))
        .order_by(Book.created_at.desc(), Book.id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(
            or_(
                Book.created_at < after.created_at,
                and_(Book.created_at == after.created_at, Book.id < after.book_id),
            )
        )
    found = list(session.scalars(query))
    session.expunge_all()
    more = len(found) > limit
    shown = found[:limit]
    cursor = Cursor(shown[-1].created_at, shown[-1].id) if more and shown else None
    return shown, cursor
