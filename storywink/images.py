"""Checks that bytes really are a picture, before we pay to store or send them."""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

_FORMAT_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


class NotAnImage(ValueError):
    """The bytes do not decode as a supported image."""


def image_mime_type(data: bytes) -> str:
    """Decode `data` fully and return its real mime type, or raise `NotAnImage`."""
    if not data:
        raise NotAnImage("empty body")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format = image.format or ""
            image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError) as exc:
        raise NotAnImage(f"not a decodable image ({type(exc).__name__})") from None
    mime = _FORMAT_MIME.get(image_format)
    if mime is None:
        raise NotAnImage(f"unsupported image format {image_format or 'unknown'}")
    return mime
