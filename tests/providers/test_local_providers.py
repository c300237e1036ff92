from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import pytest
from PIL import Image, ImageChops, ImageStat

from storywink.config import ConfigurationError, load_settings
from storywink.demo.sample_book import sample_photo_bytes
from storywink.providers.base import GeneratedImage, IllustrationJob, PermanentError, SourceImage
from storywink.providers.factory import build_illustrator
from storywink.providers.local_illustrator import LocalIllustrator
from storywink.providers.local_storage import LocalImageStore

SIZE = 256


def _jpeg(index: int) -> SourceImage:
    return SourceImage(data=sample_photo_bytes(index), mime_type="image/jpeg")


PARK, BEACH = _jpeg(1), _jpeg(2)


def _job(
    photo: SourceImage = PARK,
    style_key: str = "vignette",
    *,
    text: str | None = "Mia runs across the park.",
    is_title_page: bool = False,
) -> IllustrationJob:
    return IllustrationJob(
        prompt="ignored offline",
        photo=photo,
        style_reference=None,
        style_key=style_key,
        text=text,
        title="Mia's Big Little Adventures",
        is_title_page=is_title_page,
    )


def _open(image: GeneratedImage) -> Image.Image:
    assert image.mime_type == "image/png"
    decoded = Image.open(io.BytesIO(image.data))
    assert decoded.format == "PNG"
    return decoded.convert("RGB")


def _difference(a: GeneratedImage, b: GeneratedImage) -> float:
    """Mean absolute difference per channel, 0-255."""
    diff = ImageChops.difference(_open(a), _open(b))
    return sum(ImageStat.Stat(diff).mean) / 3


@pytest.fixture(scope="module")
def illustrator() -> LocalIllustrator:
    return LocalIllustrator(size=SIZE)


# -- LocalIllustrator ---------------------------------------------------------------------


async def test_draws_a_square_png(illustrator: LocalIllustrator) -> None:
    image = _open(await illustrator.illustrate(_job()))
    assert image.size == (SIZE, SIZE)
    # A white border around a coloured picture.
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert ImageStat.Stat(image.crop((64, 64, 192, 150))).stddev[0] > 10


async def test_is_deterministic(illustrator: LocalIllustrator) -> None:
    first = await illustrator.illustrate(_job())
    second = await illustrator.illustrate(_job())
    assert first.data == second.data


async def test_reflects_the_photo(illustrator: LocalIllustrator) -> None:
    park = await illustrator.illustrate(_job(PARK))
    beach = await illustrator.illustrate(_job(BEACH))
    assert _difference(park, beach) > 8


async def test_differs_by_style(illustrator: LocalIllustrator) -> None:
    vignette = await illustrator.illustrate(_job(style_key="vignette"))
    crayon = await illustrator.illustrate(_job(style_key="crayon"))
    storybook = await illustrator.illustrate(_job(style_key="storybook"))
    assert _difference(vignette, crayon) > 5
    assert _difference(vignette, storybook) > 5
    assert _difference(crayon, storybook) > 5


async def test_renders_text_in_the_border(illustrator: LocalIllustrator) -> None:
    with_text = _open(await illustrator.illustrate(_job(text="Hello there, Mia!")))
    without = _open(await illustrator.illustrate(_job(text=None)))
    band = (0, SIZE * 82 // 100, SIZE, SIZE)
    assert ImageChops.difference(with_text.crop(band), without.crop(band)).getbbox() is not None
    top = (0, 0, SIZE, SIZE // 2)
    assert ImageChops.difference(with_text.crop(top), without.crop(top)).getbbox() is None


async def test_title_page_draws_the_title(illustrator: LocalIllustrator) -> None:
    title = await illustrator.illustrate(_job(is_title_page=True, text=None))
    story = await illustrator.illustrate(_job(is_title_page=False, text=None))
    assert title.data != story.data


async def test_very_long_text_still_fits(illustrator: LocalIllustrator) -> None:
    image = _open(await illustrator.illustrate(_job(text="word " * 400 + "x" * 300)))
    assert image.size == (SIZE, SIZE)


async def test_unknown_style_and_bad_photo_are_permanent(illustrator: LocalIllustrator) -> None:
    with pytest.raises(PermanentError, match="unknown art style"):
        await illustrator.illustrate(_job(style_key="nope"))
    garbage = SourceImage(data=b"not an image", mime_type="image/png")
    with pytest.raises(PermanentError, match="photo is not a decodable image"):
        await illustrator.illustrate(_job(garbage))


async def test_does_not_block_the_event_loop() -> None:
    illustrator = LocalIllustrator(size=512)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    await illustrator.illustrate(_job())
    task.cancel()
    assert ticks > 3


def test_size_is_validated() -> None:
    with pytest.raises(ValueError, match="at least"):
        LocalIllustrator(size=16)


async def test_the_size_is_a_setting(tmp_path: Path) -> None:
    settings = load_settings(illustrator="local", local_image_size=200, storage_dir=tmp_path)
    image = await build_illustrator(settings).illustrate(_job())
    assert _open(image).size == (200, 200)
    assert load_settings(illustrator="local").local_image_size == 768
    with pytest.raises(ConfigurationError, match=r"LOCAL_IMAGE_SIZE: .* equal to 128"):
        load_settings(local_image_size=64)


# -- LocalImageStore ----------------------------------------------------------------------

PUBLIC_ID = "storywink/book-1/generated/page_2"


def _png(colour: tuple[int, int, int]) -> GeneratedImage:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), colour).save(out, format="PNG")
    return GeneratedImage(data=out.getvalue(), mime_type="image/png")


def _path_of(url: str) -> Path:
    parts = urlsplit(url)
    assert parts.scheme == "file"
    return Path(url2pathname(parts.path))


async def test_store_then_find(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path / "storage")
    image = _png((255, 0, 0))
    stored = await store.store(image, PUBLIC_ID, ["book_book-1", "page_2"], {"run_id": "r1"})
    path = tmp_path / "storage" / "storywink" / "book-1" / "generated" / "page_2.png"
    assert _path_of(stored.url) == path.resolve()
    assert path.read_bytes() == image.data
    assert stored.public_id == PUBLIC_ID
    assert stored.context == {"run_id": "r1"}
    sidecar = json.loads(path.with_name("page_2.png.json").read_text())
    assert sidecar["tags"] == ["book_book-1", "page_2"]

    found = await store.find(PUBLIC_ID)
    assert found == stored


async def test_find_missing_is_none(tmp_path: Path) -> None:
    assert await LocalImageStore(tmp_path).find(PUBLIC_ID) is None


async def test_overwrite_replaces_image_and_context(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path)
    await store.store(_png((255, 0, 0)), PUBLIC_ID, [], {"run_id": "r1"})
    second = _png((0, 0, 255))
    stored = await store.store(second, PUBLIC_ID, [], {"run_id": "r2"})
    assert _path_of(stored.url).read_bytes() == second.data
    found = await store.find(PUBLIC_ID)
    assert found is not None
    assert found.context == {"run_id": "r2"}


async def test_writes_atomically_leaving_no_temp_files(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path)
    images = [_png((index * 20, 0, 0)) for index in range(8)]
    await asyncio.gather(
        *(store.store(image, PUBLIC_ID, [], {"n": str(n)}) for n, image in enumerate(images))
    )
    folder = tmp_path / "storywink" / "book-1" / "generated"
    assert sorted(os.listdir(folder)) == ["page_2.png", "page_2.png.json"]
    data = (folder / "page_2.png").read_bytes()
    assert data in {image.data for image in images}
    found = await store.find(PUBLIC_ID)
    assert found is not None
    # The context is either the one written with these exact bytes, or empty if they raced.
    if found.context:
        assert images[int(found.context["n"])].data == data


async def test_stale_sidecar_gives_empty_context(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path)
    stored = await store.store(_png((1, 2, 3)), PUBLIC_ID, [], {"run_id": "r1"})
    # As if a crash happened between writing a new image and its sidecar.
    _path_of(stored.url).write_bytes(_png((9, 9, 9)).data)
    found = await store.find(PUBLIC_ID)
    assert found is not None
    assert found.context == {}


async def test_converts_other_formats_to_png_and_refuses_non_images(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path)
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, format="JPEG")
    stored = await store.store(GeneratedImage(out.getvalue(), "image/jpeg"), PUBLIC_ID, [], {})
    assert Image.open(_path_of(stored.url)).format == "PNG"
    with pytest.raises(PermanentError, match="refusing to store"):
        await store.store(GeneratedImage(b"nope", "image/png"), PUBLIC_ID, [], {})


@pytest.mark.parametrize("public_id", ["../escape", "/abs/path", "a//b", "a/./b", "", "a b"])
async def test_refuses_unsafe_public_ids(tmp_path: Path, public_id: str) -> None:
    store = LocalImageStore(tmp_path)
    with pytest.raises(PermanentError, match="invalid public id"):
        await store.store(_png((0, 0, 0)), public_id, [], {})
