"""Pictures at the door: check that bytes really are a picture, and turn a parent's photo
into the one form the pipeline and the model expect, before we pay to store or send it.

Memory is bounded by design: no picture over `MAX_PHOTO_PIXELS` is ever decoded (its
header says its size first), JPEGs are decoded at the smallest scale that still covers
`PHOTO_MAX_SIDE`, and a process decodes one picture at a time, always in the same thread
(`_DECODER`: in many threads, each thread's malloc arena would keep its own peak). So
decoding costs at most about 6 bytes per pixel of one 40 MP picture above the process's
baseline, whatever the concurrency: 220 MB measured for a 39.7 MP PNG.
"""

from __future__ import annotations

import io
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from PIL import Image, ImageCms, UnidentifiedImageError

_FORMAT_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}

MAX_PHOTO_PIXELS: Final = 40_000_000  # a 48 MP phone JPEG is decoded at half scale (draft)
PHOTO_MAX_SIDE: Final = 2048  # the largest image the model draws (GEMINI_IMAGE_SIZE 2K)
_JPEG_DRAFT_PIXELS: Final = 4 * MAX_PHOTO_PIXELS  # JPEGs decode at 1/2 to 1/8 scale
_JPEG_QUALITY: Final = 92
_PAPER: Final = (255, 255, 255)

# Our own limit (checked on the header) replaces Pillow's warning; its error stays as a
# backstop for the pictures we only identify.
Image.MAX_IMAGE_PIXELS = _JPEG_DRAFT_PIXELS
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# One decode at a time per process, always in the same thread: the memory bound above holds
# at any concurrency (in many threads, each thread's malloc arena would keep its own peak).
_DECODER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="storywink-decode")
_SRGB = ImageCms.createProfile("sRGB")
_DECODE_ERRORS = (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError)


class NotAnImage(ValueError):
    """The bytes do not decode as a supported image, or one too large to decode."""


@dataclass(frozen=True)
class Photo:
    """A photo as the pipeline uses it: upright, 8-bit sRGB, at most PHOTO_MAX_SIDE."""

    data: bytes
    mime_type: str
    width: int
    height: int


def image_mime_type(data: bytes) -> str:
    """Decode `data` fully (a JPEG at the scale `normalise_photo` uses) and return its real
    mime type, or raise `NotAnImage`."""
    return _DECODER.submit(_decoded_mime_type, data).result()


def _decoded_mime_type(data: bytes) -> str:
    with _opened(data) as image:
        mime = _mime_of(image)
        _draft(image)
        _load(image)
    return mime


def photo_header(path: Path) -> str:
    """The photo's mime type from its header alone (format and size checked, no pixel
    decoded), or `NotAnImage`. `normalise_photo` decodes it."""
    with _opened(path) as image:
        return _mime_of(image)


def normalise_photo(data: bytes) -> Photo:
    """The photo upright (EXIF orientation applied), in 8-bit sRGB without alpha (CMYK,
    16-bit, palette, grey with alpha and ICC profiles converted; an animation's first
    frame), at most PHOTO_MAX_SIDE on its longer side. A photo that already is all that
    keeps its bytes. Raises `NotAnImage` naming the problem."""
    return _DECODER.submit(_normalise, data).result()


def _normalise(data: bytes) -> Photo:
    with _opened(data) as image:
        mime = _mime_of(image)
        _draft(image)
        _load(image)
        if _already_normal(image, mime):
            return Photo(data, mime, image.width, image.height)
        normal = _normalised(image)
        out = io.BytesIO()
        if mime == "image/jpeg":
            normal.save(out, format="JPEG", quality=_JPEG_QUALITY)
        else:
            normal.save(out, format="PNG")
        mime = "image/jpeg" if mime == "image/jpeg" else "image/png"
    return Photo(out.getvalue(), mime, normal.width, normal.height)


class _opened:
    """`Image.open` with the size checked on the header, before any pixel is decoded."""

    def __init__(self, source: bytes | Path) -> None:
        if not source or (isinstance(source, Path) and source.stat().st_size == 0):
            raise NotAnImage("empty body" if isinstance(source, bytes) else "empty file")
        try:
            self._image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        except Image.DecompressionBombError:
            raise NotAnImage(f"more than {_megapixels(_JPEG_DRAFT_PIXELS)} pixels") from None
        except _DECODE_ERRORS as exc:
            raise NotAnImage(f"not a decodable image ({type(exc).__name__})") from None
        width, height = self._image.size
        limit = _JPEG_DRAFT_PIXELS if self._image.format == "JPEG" else MAX_PHOTO_PIXELS
        if width * height > limit:
            self._image.close()
            raise NotAnImage(
                f"{width}x{height} pixels ({_megapixels(width * height)}), over the "
                f"{_megapixels(limit)} a photo may have"
            )

    def __enter__(self) -> Image.Image:
        return self._image

    def __exit__(self, *_: object) -> None:
        self._image.close()


def _draft(image: Image.Image) -> None:
    """A JPEG decodes at the smallest of 1/8, 1/4, 1/2 or full scale that still covers
    PHOTO_MAX_SIDE; what it will decode must fit MAX_PHOTO_PIXELS (a very long panorama
    cannot be reduced enough)."""
    if image.format != "JPEG":
        return
    original = image.size
    image.draft("RGB", (PHOTO_MAX_SIDE, PHOTO_MAX_SIDE))
    width, height = image.size
    if width * height > MAX_PHOTO_PIXELS:
        raise NotAnImage(
            f"{original[0]}x{original[1]} pixels, over the {_megapixels(MAX_PHOTO_PIXELS)} "
            "a photo may have at the scale it is decoded"
        )


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1_000_000:.0f} MP"


def _mime_of(image: Image.Image) -> str:
    mime = _FORMAT_MIME.get(image.format or "")
    if mime is None:
        raise NotAnImage(f"unsupported image format {image.format or 'unknown'}")
    return mime


def _load(image: Image.Image) -> None:
    try:
        image.load()
    except _DECODE_ERRORS as exc:
        raise NotAnImage(f"not a decodable image ({type(exc).__name__})") from None


def _already_normal(image: Image.Image, mime: str) -> bool:
    return (
        mime in ("image/jpeg", "image/png")
        and image.mode == "RGB"
        and max(image.size) <= PHOTO_MAX_SIDE
        and _orientation(image) in (0, 1)
        and not image.info.get("icc_profile")
        and not getattr(image, "is_animated", False)
    )


def _orientation(image: Image.Image) -> int:
    return int(image.getexif().get(0x0112, 1) or 1)


def _normalised(image: Image.Image) -> Image.Image:
    orientation = _orientation(image)
    rgb = _to_srgb(image)
    rgb.thumbnail((PHOTO_MAX_SIDE, PHOTO_MAX_SIDE), Image.Resampling.LANCZOS)
    upright = _transposed(rgb, orientation)
    upright.info.clear()  # no EXIF orientation or profile left to apply twice
    return upright


_TRANSPOSE: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _transposed(image: Image.Image, orientation: int) -> Image.Image:
    method = _TRANSPOSE.get(orientation)
    return image.transpose(method) if method is not None else image


def _to_srgb(image: Image.Image) -> Image.Image:
    """8-bit RGB in sRGB: alpha flattened on white, 16-bit scaled (not clipped), an ICC
    profile applied. The first frame of an animation (Pillow opens on it)."""
    frame = image
    if frame.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        top = 65535 if frame.mode.startswith("I;16") or _max_value(frame) > 255 else 255
        frame = frame.convert("I").point(lambda value: value * (255 / top)).convert("L")
    elif frame.mode == "F":
        frame = frame.convert("L")
    icc = image.info.get("icc_profile")
    if icc and frame.mode in ("RGB", "CMYK", "L"):
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(frame, source, _SRGB, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            converted = None  # a broken profile: the plain conversion below
        if converted is not None:
            return converted
    if frame.mode in ("RGBA", "LA", "PA", "P", "RGBa", "La") or "transparency" in frame.info:
        rgba = frame.convert("RGBA")
        paper = Image.new("RGB", rgba.size, _PAPER)
        paper.paste(rgba, mask=rgba.getchannel("A"))
        return paper
    return frame if frame.mode == "RGB" else frame.convert("RGB")


def _max_value(image: Image.Image) -> int:
    extrema = image.getextrema()
    return int(extrema[1]) if isinstance(extrema[1], (int, float)) else 65535
