from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from PIL import Image

from storywink.demo.gallery import GalleryPage, write_gallery
from storywink.demo.sample_book import (
    SAMPLE_CHILD_NAME,
    SAMPLE_TITLE,
    sample_story,
    write_sample_photos,
)
from storywink.images import image_mime_type

# -- sample book --------------------------------------------------------------------------


def test_sample_photos_are_distinct_decodable_jpegs(tmp_path: Path) -> None:
    paths = write_sample_photos(tmp_path / "photos")
    assert [path.name for path in paths] == [f"{n:02d}.jpg" for n in range(1, 7)]
    for path in paths:
        assert image_mime_type(path.read_bytes()) == "image/jpeg"
        with Image.open(path) as image:
            assert image.width > image.height >= 240  # a landscape snapshot
    digests = {hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}
    assert len(digests) == len(paths)


def test_sample_photos_are_deterministic(tmp_path: Path) -> None:
    first = write_sample_photos(tmp_path / "a", count=2)
    second = write_sample_photos(tmp_path / "b", count=2)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_more_photos_than_scenes_are_still_distinct(tmp_path: Path) -> None:
    paths = write_sample_photos(tmp_path, count=8)
    assert len({path.read_bytes() for path in paths}) == 8


def test_sample_story() -> None:
    story = sample_story(6)
    assert len(story) == 6
    assert story[0] == SAMPLE_TITLE
    assert SAMPLE_CHILD_NAME in SAMPLE_TITLE
    for text in story[1:]:
        sentences = [s for s in re.split(r"[.!?]+", text) if s.strip()]
        assert 1 <= len(sentences) <= 3, text
    assert len(set(sample_story(9))) == 9


def test_counts_below_one_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        sample_story(0)
    with pytest.raises(ValueError, match="at least 1"):
        write_sample_photos(tmp_path, count=0)


# -- gallery ------------------------------------------------------------------------------


def test_gallery_escapes_text_and_links_images(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "01 first.jpg").write_bytes(b"x")
    storage = tmp_path / "storage" / "page_1.png"
    pages = [
        GalleryPage(
            page_number=2,
            text="<script>alert('x')</script> & friends",
            original_image_url="https://cdn.example/p2.jpg?sig=a&b=c",
            generated_image_url=None,
            moderation_status="FLAGGED",
            moderation_reason='generate: blocked "SAFETY" <b>',
        ),
        GalleryPage(
            page_number=1,
            text="Mia's book",
            original_image_url=(photos / "01 first.jpg").as_uri(),
            generated_image_url=storage.as_uri(),
            moderation_status="OK",
            moderation_reason=None,
        ),
    ]
    out = write_gallery(
        tmp_path / "site" / "index.html", title="<Mia & Co>", status="PARTIAL", pages=pages
    )
    html = out.read_text(encoding="utf-8")

    assert out == tmp_path / "site" / "index.html"
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; friends" in html
    assert "<title>&lt;Mia &amp; Co&gt;</title>" in html
    assert "generate: blocked &quot;SAFETY&quot; &lt;b&gt;" in html
    assert "PARTIAL" in html
    # Pages in order, each with its status.
    assert html.index('id="page-1"') < html.index('id="page-2"')
    assert 'class="badge ok">OK<' in html
    assert 'class="badge flagged">FLAGGED<' in html
    # Local files become relative, remote URLs stay (escaped), missing ones are placeholders.
    assert 'src="../photos/01%20first.jpg"' in html
    assert 'src="../storage/page_1.png"' in html
    assert 'src="https://cdn.example/p2.jpg?sig=a&amp;b=c"' in html
    assert "no illustration" in html


def test_gallery_drops_unsafe_image_urls(tmp_path: Path) -> None:
    page = GalleryPage(
        page_number=1,
        text=None,
        original_image_url="javascript:alert(1)",
        generated_image_url='https://x.example/a.png" onerror="alert(1)',
        moderation_status="weird<status>",
    )
    html = write_gallery(tmp_path / "g.html", title="t", status="s", pages=[page]).read_text()
    assert "javascript:" not in html
    assert 'onerror="' not in html
    assert "no photo" in html
    assert 'class="badge pending">weird&lt;status&gt;<' in html
