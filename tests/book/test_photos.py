"""Photos a parent really has, normalised once at the door (`storywink.images`): upright,
8-bit sRGB, no alpha, at most PHOTO_MAX_SIDE; too many pixels refused by file name."""

from __future__ import annotations

import functools
import io
from pathlib import Path

import pytest
from PIL import Image, ImageCms

from storywink.contract import ModerationStatus
from storywink.images import (
    MAX_PHOTO_PIXELS,
    PHOTO_MAX_SIDE,
    NotAnImage,
    image_mime_type,
    normalise_photo,
)
from tests.support.commands import book_count, create, original_photos
from tests.support.pipeline import Pipeline

RED, BLUE = (255, 0, 0), (0, 0, 255)


def encoded(image: Image.Image, image_format: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=image_format, **options)
    return out.getvalue()


@functools.cache
def panorama_13000() -> bytes:
    """A real 13000x13000 PNG, small on disk (164 KB): made once, it takes a second."""
    return encoded(Image.new("L", (13000, 13000)), "PNG")


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def near(pixel: object, expected: tuple[int, int, int], tolerance: int = 12) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


def left_blue_right_red(size: tuple[int, int] = (400, 200)) -> Image.Image:
    image = Image.new("RGB", size, RED)
    image.paste(BLUE, (0, 0, size[0] // 4, size[1]))
    return image


def with_orientation(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(image, "JPEG", exif=exif, quality=95)


# Where the blue quarter (left in the stored pixels) is once the orientation is applied.
@pytest.mark.parametrize(
    ("orientation", "size", "blue_at"),
    [
        (1, (400, 200), (10, 100)),
        (3, (400, 200), (390, 100)),
        (6, (200, 400), (100, 10)),  # most phone photos: turned a quarter clockwise
        (8, (200, 400), (100, 390)),
    ],
)
def test_exif_orientation_is_applied_and_removed(
    orientation: int, size: tuple[int, int], blue_at: tuple[int, int]
) -> None:
    photo = normalise_photo(with_orientation(left_blue_right_red(), orientation))
    image = decoded(photo.data)
    assert image.size == size
    assert near(image.getpixel(blue_at), BLUE)
    assert image.getexif().get(0x0112, 1) == 1


def test_cmyk_sixteen_bit_palette_grey_alpha_icc_and_animation_become_8_bit_rgb() -> None:
    cmyk = encoded(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), "JPEG")
    grey16 = encoded(Image.new("I;16", (64, 64), 40000), "PNG")  # 40000/65535 of white
    palette = Image.new("P", (64, 64), 1)
    palette.putpalette([0, 0, 0, 200, 100, 50])
    grey_alpha = encoded(Image.new("LA", (64, 64), (0, 0)), "PNG")  # transparent: paper
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    icc = encoded(Image.new("RGB", (64, 64), (10, 200, 30)), "PNG", icc_profile=srgb)
    frames = [Image.new("RGB", (64, 64), colour) for colour in (RED, BLUE)]
    animated = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])

    expected = {
        "cmyk": (cmyk, (255, 0, 0)),
        "16-bit": (grey16, (155, 155, 155)),  # scaled, not clipped to white
        "palette": (encoded(palette, "PNG"), (200, 100, 50)),
        "grey+alpha": (grey_alpha, (255, 255, 255)),
        "icc": (icc, (10, 200, 30)),
        "animated": (animated, RED),  # the first frame
    }
    for kind, (data, colour) in expected.items():
        photo = normalise_photo(data)
        image = decoded(photo.data)
        assert (kind, image.mode) == (kind, "RGB")
        assert photo.mime_type == Image.MIME[image.format or ""], kind
        assert near(image.getpixel((5, 5)), colour, tolerance=3), kind
        assert "icc_profile" not in image.info, kind
        assert getattr(image, "n_frames", 1) == 1, kind


def test_a_photo_already_normal_keeps_its_bytes_and_a_big_one_is_downscaled() -> None:
    small = encoded(left_blue_right_red(), "JPEG")
    assert normalise_photo(small).data == small
    big = normalise_photo(encoded(Image.new("RGB", (4000, 3000), RED), "JPEG"))
    assert (big.width, big.height) == (PHOTO_MAX_SIDE, PHOTO_MAX_SIDE * 3 // 4)


def test_too_many_pixels_are_refused_from_the_header_without_decoding() -> None:
    side = int(MAX_PHOTO_PIXELS**0.5) + 100
    huge = encoded(Image.new("L", (side, side)), "PNG")  # small on disk
    for check in (normalise_photo, image_mime_type):
        with pytest.raises(NotAnImage, match=rf"{side}x{side} pixels .* over the 40 MP"):
            check(huge)
    # A JPEG decodes at reduced scale, but a long panorama cannot be reduced enough.
    panorama = encoded(Image.new("RGB", (30000, 2500)), "JPEG")
    with pytest.raises(NotAnImage, match=r"30000x2500 pixels, over the 40 MP .* decoded"):
        normalise_photo(panorama)
    phone = normalise_photo(encoded(Image.new("RGB", (12000, 9000)), "JPEG"))  # 108 MP
    assert (phone.width, phone.height) == (PHOTO_MAX_SIDE, PHOTO_MAX_SIDE * 3 // 4)


@pytest.fixture
def parents_photos(tmp_path: Path) -> Path:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "1-phone.jpg").write_bytes(with_orientation(left_blue_right_red(), 6))
    (photos / "2-print.jpg").write_bytes(
        encoded(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), "JPEG")
    )
    (photos / "3-scan.png").write_bytes(encoded(Image.new("I;16", (64, 64), 40000), "PNG"))
    return photos


def test_book_create_stores_each_photo_normalised(tmp_path: Path, parents_photos: Path) -> None:
    result = create(tmp_path)

    assert result.returncode == 0, result.stderr
    phone, cmyk, scan = (
        decoded(p.read_bytes()) for p in original_photos(tmp_path, result.stdout.strip())
    )
    assert phone.size == (200, 400) and near(phone.getpixel((100, 10)), BLUE)
    assert cmyk.mode == "RGB" and near(cmyk.getpixel((5, 5)), RED)
    assert near(scan.getpixel((5, 5)), (155, 155, 155), tolerance=2)


def test_book_create_refuses_a_photo_with_too_many_pixels_by_name(
    tmp_path: Path, parents_photos: Path
) -> None:
    (parents_photos / "4-panorama.png").write_bytes(panorama_13000())

    result = create(tmp_path)

    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "4-panorama.png: 13000x13000 pixels (169 MP), over the 40 MP" in line
    assert "DecompressionBomb" not in result.stderr
    assert book_count(tmp_path) == 0


async def test_a_photo_with_too_many_pixels_from_elsewhere_fails_its_page_by_name(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    photos = tmp_path / "storage" / "photos"
    photos.mkdir(parents=True)
    (photos / "ok.jpg").write_bytes(with_orientation(left_blue_right_red(), 6))
    (photos / "huge.png").write_bytes(panorama_13000())
    book_id = pipeline.book([(photos / n).as_uri() for n in ("ok.jpg", "huge.png")])

    async with pipeline.worker():
        await (await pipeline.start(book_id)).result()

    _, pages, _ = pipeline.load(book_id)
    assert pages[0].moderation_status is ModerationStatus.OK
    assert pages[1].moderation_status is ModerationStatus.FAILED
    assert "huge.png: 13000x13000 pixels (169 MP)" in (pages[1].moderation_reason or "")
