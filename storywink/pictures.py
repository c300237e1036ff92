"""Who sees a book's photos and pictures: the asset refs a page keeps, and the signed,
expiring URLs everyone who shows one is given (docs/privacy.md).

A page keeps an *asset ref* for its photo and for its picture: the asset id of a private
asset in the configured store, or, for one stored before private images (migration 0008),
the public URL it was stored under, which stays readable until it is moved
(`storywink images privatize`) or erased. Nothing else is kept: a signed URL is made when
an image is shown (the CLI, the clients, the web backend, the demo's gallery) or fetched
(the model's photo, in the activity that fetches it), and never stored or put in a
workflow's history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from storywink.config import Settings
from storywink.providers.base import ImageStore, StoredImage

LEGACY_URL_SCHEMES: Final = ("http://", "https://", "file://")
# A worker's own fetch of a private photo: signed for that one download only.
FETCH_URL_TTL: Final = timedelta(minutes=5)


def is_legacy_url(ref: str) -> bool:
    """Whether an asset ref is the URL of an image stored before private images."""
    return ref.startswith(LEGACY_URL_SCHEMES)


def asset_ref(stored: StoredImage) -> str:
    """What a page keeps for a stored image: its asset id, or a public asset's URL."""
    return stored.public_id if stored.private else stored.url


def url_to_fetch(store: ImageStore, ref: str) -> str:
    """A URL a worker fetches the image of `ref` from, signed now for `FETCH_URL_TTL`."""
    if is_legacy_url(ref):
        return ref
    return store.signed_url(ref, datetime.now(UTC) + FETCH_URL_TTL)


@dataclass(frozen=True)
class RefColumns:
    """An asset ref split over the page's two columns: the asset id, or a legacy URL."""

    asset_id: str | None
    legacy_url: str | None


def ref_columns(ref: str | None) -> RefColumns:
    if ref is None:
        return RefColumns(None, None)
    return RefColumns(None, ref) if is_legacy_url(ref) else RefColumns(ref, None)


class PictureSigner:
    """Signed URLs of asset refs, valid for `ttl` from the moment they are made
    (`IMAGE_URL_TTL_SECONDS`); a legacy public URL is shown as it is."""

    def __init__(
        self,
        store: ImageStore,
        ttl: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.ttl = ttl
        self._clock = clock

    def expiry(self) -> datetime:
        """When the URLs signed now stop working (one expiry for all of an answer)."""
        return self._clock().replace(microsecond=0) + self.ttl

    def url(self, ref: str | None, expires_at: datetime | None = None) -> str | None:
        if not ref:
            return None
        if is_legacy_url(ref):
            return ref
        return self.store.signed_url(ref, expires_at or self.expiry())


def picture_signer(settings: Settings, store: ImageStore | None = None) -> PictureSigner:
    """The signer of the configured store (or `store`), at `IMAGE_URL_TTL_SECONDS`."""
    from storywink.providers.factory import build_store

    return PictureSigner(
        store if store is not None else build_store(settings),
        timedelta(seconds=settings.image_url_ttl_seconds),
    )
