"""The style library: a small, versioned, immutable table of art styles.

Validated and hashed when a worker starts; a book's style is resolved once per
illustration run into a `StyleSnapshot` that travels with every page.
"""

from __future__ import annotations

import hashlib
import json
from types import MappingProxyType
from typing import Final
from urllib.parse import urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from storywink.contract import StyleSnapshot

STYLE_LIBRARY_VERSION: Final = 1


class UnknownStyle(LookupError):
    def __init__(self, key: str) -> None:
        super().__init__(f"unknown art style {key!r}; known styles: {', '.join(STYLES)}")
        self.key = key


class StyleLibraryError(ValueError):
    """The style library is incomplete or names a malformed URL."""


class Style(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    label: str = Field(min_length=1)
    description: str = Field(min_length=20)
    reference_images: tuple[str, ...] = Field(min_length=1)
    title_reference_image: str | None = None
    # Used by the offline illustrator: ink colour and a small palette to posterise into.
    ink: str = "#2b2b2b"
    palette: tuple[str, ...] = ()


_STYLES: Final = (
    Style(
        key="vignette",
        label="Vignette",
        description=(
            "Soft watercolour vignette: gentle washes of muted pastel colour fading into a "
            "clean white border, fine dark ink outlines, simple rounded shapes, warm light."
        ),
        reference_images=("vignette/reference-1.png",),
        title_reference_image="vignette/title.png",
        ink="#3d3a4b",
        palette=("#f6e7d8", "#e9b8a6", "#9cc5c0", "#f2d38a", "#7c9ccf", "#ffffff"),
    ),
    Style(
        key="crayon",
        label="Crayon",
        description=(
            "Bright wax-crayon drawing as a child would make it: bold saturated colours, "
            "visible strokes, thick wobbly outlines, flat shapes on white paper."
        ),
        reference_images=("crayon/reference-1.png",),
        ink="#1f1f1f",
        palette=("#ffffff", "#ffd23f", "#ee4266", "#3bceac", "#540d6e", "#0ead69"),
    ),
    Style(
        key="storybook",
        label="Classic storybook",
        description=(
            "Classic picture-book gouache: rich earthy colours, soft shading, detailed "
            "backgrounds, friendly characters with expressive faces, cosy atmosphere."
        ),
        reference_images=("storybook/reference-1.png", "storybook/reference-2.png"),
        ink="#402a1e",
        palette=("#fbf3e4", "#d9a05b", "#8c5e3c", "#6b8f71", "#c8553d", "#2d4a5a"),
    ),
)

STYLES: Final = MappingProxyType({style.key: style for style in _STYLES})
DEFAULT_STYLE: Final = "vignette"


def library_hash() -> str:
    """Content hash of the whole library, logged at worker start to spot mixed deploys."""
    canonical = json.dumps(
        [style.model_dump(mode="json") for style in _STYLES], sort_keys=True
    ).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


def _style_hash(style: Style) -> str:
    canonical = json.dumps(style.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


def asset_url(assets_url: str, path: str) -> str:
    return urljoin(assets_url if assets_url.endswith("/") else assets_url + "/", path)


def _check_url(url: str, what: str) -> None:
    parts = urlsplit(url)
    has_location = parts.path if parts.scheme == "file" else parts.netloc
    if parts.scheme not in ("http", "https", "file") or not has_location:
        raise StyleLibraryError(f"{what}: {url!r} is not a well-formed http(s) URL")


def validate_library(assets_url: str) -> str:
    """Check every style is complete and every URL well-formed; return the library hash."""
    _check_url(assets_url, "STYLE_ASSETS_URL")
    if len(STYLES) < 2:
        raise StyleLibraryError("the style library needs at least two styles")
    if DEFAULT_STYLE not in STYLES:
        raise StyleLibraryError(f"default style {DEFAULT_STYLE!r} is not in the library")
    for style in _STYLES:
        for path in (*style.reference_images, style.title_reference_image):
            if path is not None:
                _check_url(asset_url(assets_url, path), f"style {style.key!r}")
        if len(style.palette) < 2:
            raise StyleLibraryError(f"style {style.key!r} needs a palette of two colours or more")
    return library_hash()


def resolve_style(key: str, assets_url: str) -> StyleSnapshot:
    """Freeze one style, with absolute reference URLs, for a whole illustration run."""
    style = STYLES.get(key)
    if style is None:
        raise UnknownStyle(key)
    return StyleSnapshot(
        key=style.key,
        label=style.label,
        version=STYLE_LIBRARY_VERSION,
        content_hash=_style_hash(style),
        description=style.description,
        reference_image_urls=tuple(asset_url(assets_url, p) for p in style.reference_images),
        title_reference_image_url=(
            asset_url(assets_url, style.title_reference_image)
            if style.title_reference_image
            else None
        ),
    )
