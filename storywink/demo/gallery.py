"""A static HTML page showing a book's photos beside their illustrations.

Self-contained (inline CSS, no scripts) and safe to open from disk: every text is
escaped, only http(s) and file images are linked, and file:// images become paths
relative to the page, so a folder holding the page and its pictures can be moved.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Final
from urllib.parse import quote, urlsplit
from urllib.request import url2pathname

_STATUS_CLASSES: Final = frozenset({"ok", "flagged", "failed", "pending"})

_CSS: Final = """
body { font-family: Georgia, 'Times New Roman', serif; margin: 2rem auto; max-width: 1100px;
       padding: 0 1rem; color: #2b2b2b; background: #fbf8f3; }
h1 { margin-bottom: 0.2rem; }
.book-status { color: #666; margin-top: 0; }
.page { background: #fff; border-radius: 12px; box-shadow: 0 1px 4px rgba(0,0,0,.12);
        margin: 1.5rem 0; padding: 1rem 1.25rem; }
.page header { display: flex; gap: 0.75rem; align-items: baseline; }
.page h2 { margin: 0; font-size: 1.2rem; }
.badge { border-radius: 999px; font: 600 0.75rem sans-serif; padding: 0.15rem 0.6rem; }
.badge.ok { background: #d8f3dc; color: #1b4332; }
.badge.flagged { background: #ffe8cc; color: #7a4100; }
.badge.failed { background: #ffd6d6; color: #7a0010; }
.badge.pending { background: #e7e7ef; color: #3d3d5c; }
.reason { color: #7a4100; font-size: 0.9rem; margin: 0.4rem 0 0; }
.text { font-size: 1.1rem; margin: 0.6rem 0; }
.images { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
figure { margin: 0; }
figure img { width: 100%; border-radius: 8px; display: block; }
figcaption { color: #666; font: 0.8rem sans-serif; margin-top: 0.3rem; }
.missing { align-items: center; aspect-ratio: 1; background: #eee; border-radius: 8px;
           color: #888; display: flex; font: 0.9rem sans-serif; justify-content: center; }
"""


@dataclass(frozen=True)
class GalleryPage:
    page_number: int
    text: str | None
    original_image_url: str | None
    generated_image_url: str | None
    moderation_status: str
    moderation_reason: str | None = None


def write_gallery(
    path: Path,
    *,
    title: str,
    status: str,
    pages: Sequence[GalleryPage],
    urls_expire_at: datetime | None = None,
) -> Path:
    """Write the gallery HTML to `path` (creating its directory) and return `path`.
    `urls_expire_at`: when the signed URLs of its images stop working (said on the page)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    sections = [_page_html(page, base) for page in sorted(pages, key=lambda p: p.page_number)]
    document = "\n".join(
        [
            "<!doctype html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            f"<h1>{escape(title)}</h1>",
            f'<p class="book-status">Status: <strong>{escape(status)}</strong>'
            f" &middot; {len(pages)} pages</p>",
            _expiry_html(urls_expire_at),
            *sections,
            "</body>",
            "</html>",
            "",
        ]
    )
    path.write_text(document, encoding="utf-8")
    return path


def _expiry_html(urls_expire_at: datetime | None) -> str:
    if urls_expire_at is None:
        return ""
    when = escape(urls_expire_at.isoformat(timespec="seconds"))
    return (
        f'<p class="book-status">The images are private: their links expire at {when}'
        " (<code>storywink status --json</code> gives new ones).</p>"
    )


def _page_html(page: GalleryPage, base: Path) -> str:
    status = page.moderation_status.lower()
    badge_class = status if status in _STATUS_CLASSES else "pending"
    reason = (
        f'<p class="reason">{escape(page.moderation_reason)}</p>' if page.moderation_reason else ""
    )
    text = f'<p class="text">{escape(page.text)}</p>' if page.text else ""
    return (
        f'<section class="page" id="page-{page.page_number}">'
        f"<header><h2>Page {page.page_number}</h2>"
        f'<span class="badge {badge_class}">{escape(page.moderation_status)}</span></header>'
        f"{reason}{text}"
        '<div class="images">'
        f"{_figure(page.original_image_url, 'Photo', base)}"
        f"{_figure(page.generated_image_url, 'Illustration', base)}"
        "</div></section>"
    )


def _figure(url: str | None, caption: str, base: Path) -> str:
    source = _image_source(url, base) if url else None
    if source is None:
        image = f'<div class="missing">no {caption.lower()}</div>'
    else:
        image = f'<img src="{escape(source)}" alt="{escape(caption)}" loading="lazy">'
    return f"<figure>{image}<figcaption>{escape(caption)}</figcaption></figure>"


def _image_source(url: str, base: Path) -> str | None:
    """A safe `src` for `url`: a relative path for local files, else the URL; or None."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return url
    if scheme != "file" or parts.netloc not in ("", "localhost"):
        return None
    file_path = Path(url2pathname(parts.path))
    try:
        relative = os.path.relpath(file_path, base)
    except ValueError:  # another drive on Windows
        return url
    return quote(Path(relative).as_posix())
