"""The styles' reference images: shipped with the package, published to the image store,
checked before a worker that sends them to the model starts.

`storywink styles publish` uploads them under a folder named by their content hash
(`storywink/styles/<hash>/<style>/<name>`), so publishing twice changes nothing and a
changed image gets a new folder instead of overwriting what running books use. It prints
the `STYLE_ASSETS_URL` to set.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from storywink.illustration.styles import STYLES, asset_url
from storywink.providers.base import GeneratedImage, ImageStore, PermanentError, TransientError
from storywink.providers.fetch import ImageFetcher

REFERENCES_DIR: Final = Path(__file__).parent / "style_references"
PUBLIC_ID_PREFIX: Final = "storywink/styles"


def reference_paths() -> list[str]:
    """Every reference image the style library names, relative to STYLE_ASSETS_URL."""
    paths: list[str] = []
    for style in STYLES.values():
        paths.extend(style.reference_images)
        if style.title_reference_image:
            paths.append(style.title_reference_image)
    return sorted(paths)


def references_hash() -> str:
    """One hash of every shipped reference image and its name."""
    digest = hashlib.sha256()
    for path in reference_paths():
        digest.update(path.encode() + b"\0" + (REFERENCES_DIR / path).read_bytes())
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class Published:
    assets_url: str  # what STYLE_ASSETS_URL should be
    uploaded: int
    already_there: int


async def publish_references(store: ImageStore) -> Published:
    """Upload the shipped references that the store lacks; the base URL that serves them."""
    folder = f"{PUBLIC_ID_PREFIX}/{references_hash()}"
    uploaded = already_there = 0
    bases = set()
    for path in reference_paths():
        public_id = f"{folder}/{PurePosixPath(path).with_suffix('')}"
        stored = await store.find(public_id, private=False)
        if stored is None:
            image = GeneratedImage((REFERENCES_DIR / path).read_bytes(), "image/png")
            stored = await store.store(
                image,
                public_id,
                tags=["style_reference"],
                context={"folder": folder},
                private=False,  # our own art, which every worker fetches by URL
            )
            uploaded += 1
        else:
            already_there += 1
        if not stored.url.endswith(path):
            raise PermanentError(f"the {store.name} store serves {path} as {stored.url}")
        bases.add(stored.url.removesuffix(path))
    # Cloudinary puts an upload's version in its URL (…/v1712345/…): any one serves all.
    return Published(sorted(bases)[0], uploaded, already_there)


async def missing_references(fetcher: ImageFetcher, assets_url: str) -> tuple[list[str], list[str]]:
    """Fetch every reference under `assets_url`: (missing for good, unreachable for now),
    each as `style/name: reason`."""
    missing, unreachable = [], []
    for path in reference_paths():
        try:
            await fetcher.fetch(asset_url(assets_url, path), "style reference")
        except PermanentError as exc:
            missing.append(f"{path}: {exc.reason}")
        except TransientError as exc:
            unreachable.append(f"{path}: {exc.reason}")
    return missing, unreachable
