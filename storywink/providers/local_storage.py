"""The local image store of the embedded default: PNG files in a directory.

`<root>/<public_id>.png` holds the picture and `<root>/<public_id>.png.json` its context
and tags. Both are written atomically (temp file, fsync, rename), so a reader never sees
half a file and a retried upload simply overwrites. Nothing here is public, whatever
`private` says: the files are served only by the web backend, to their book's owner. The
sidecar records the image's
SHA-256: if the two files come from different writes (a crash between them, or two
workers racing), `find()` returns the image with an empty context, so a caller that
trusts the context (e.g. "stored by this run") never reuses the wrong picture.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Final

from PIL import Image

from storywink.images import NotAnImage, image_mime_type
from storywink.providers.base import GeneratedImage, PermanentError, StoredImage, TransientError

_PNG_MODES: Final = frozenset({"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"})
_PUBLIC_ID: Final = re.compile(r"^[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*$")


class LocalImageStore:
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, public_id: str) -> Path:
        """Where `public_id` lives; refuses ids that could escape the root."""
        if len(public_id) > 400 or not _PUBLIC_ID.fullmatch(public_id):
            raise PermanentError(f"invalid public id {public_id[:80]!r}")
        return self.root.joinpath(*public_id.split("/")).with_suffix(".png")

    async def store(
        self,
        image: GeneratedImage,
        public_id: str,
        tags: list[str],
        context: dict[str, str],
        *,
        private: bool = True,
    ) -> StoredImage:
        path = self.path_for(public_id)
        try:
            await asyncio.to_thread(self._write, path, image, public_id, tags, context)
        except OSError as exc:  # e.g. a full disk: name the file and the setting
            raise TransientError(
                f"cannot write {path} (local storage, STORAGE_DIR={self.root}): "
                f"{exc.strerror or type(exc).__name__}"
            ) from None
        return StoredImage(url=_file_url(path), public_id=public_id, context=dict(context))

    async def find(self, public_id: str, *, private: bool = True) -> StoredImage | None:
        path = self.path_for(public_id)
        return await asyncio.to_thread(self._read, path, public_id)

    def signed_url(self, public_id: str, expires_at: datetime) -> str:
        """The file's own `file://` URL, for the processes that share the disk (a worker,
        the CLI). Nothing serves the folder to others: the web backend serves a picture
        to its book's owner only (storywink.web.routes_books)."""
        return _file_url(self.path_for(public_id))

    async def delete_prefix(self, prefix: str) -> int:
        """Delete the folder `prefix` names: every picture, its sidecar, a temp file a
        crashed write left; how many pictures it held."""
        folder_id = prefix.removesuffix("/")
        if not prefix.endswith("/") or not _PUBLIC_ID.fullmatch(folder_id):
            raise PermanentError(f"invalid folder prefix {prefix[:80]!r}")
        folder = self.root.joinpath(*folder_id.split("/"))
        try:
            return await asyncio.to_thread(_delete_folder, folder)
        except OSError as exc:
            raise TransientError(
                f"cannot delete {folder} (local storage, STORAGE_DIR={self.root}): "
                f"{exc.strerror or type(exc).__name__}"
            ) from None

    def _write(
        self,
        path: Path,
        image: GeneratedImage,
        public_id: str,
        tags: list[str],
        context: dict[str, str],
    ) -> None:
        data = _as_png(image.data)
        sidecar = {
            "public_id": public_id,
            "tags": list(tags),
            "context": dict(context),
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, data)
        _write_atomically(_sidecar_path(path), json.dumps(sidecar, sort_keys=True).encode())

    def _read(self, path: Path, public_id: str) -> StoredImage | None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return StoredImage(
            url=_file_url(path), public_id=public_id, context=_read_context(path, data)
        )


def _delete_folder(folder: Path) -> int:
    if not folder.is_dir() or folder.is_symlink():
        return 0
    pictures = sum(1 for path in folder.rglob("*.png") if path.is_file())
    shutil.rmtree(folder)  # a symlink inside is removed, never followed
    return pictures


def _read_context(path: Path, data: bytes) -> dict[str, str]:
    """The sidecar's context if it describes exactly these bytes, else an empty one."""
    try:
        sidecar = json.loads(_sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(sidecar, dict) or sidecar.get("sha256") != hashlib.sha256(data).hexdigest():
        return {}
    context = sidecar.get("context")
    if not isinstance(context, dict):
        return {}
    return {str(key): str(value) for key, value in context.items()}


def _as_png(data: bytes) -> bytes:
    """The image as PNG bytes; other formats are converted, non-images refused."""
    try:
        mime_type = image_mime_type(data)
    except NotAnImage as exc:
        raise PermanentError(f"refusing to store: {exc}") from None
    if mime_type == "image/png":
        return data
    with Image.open(io.BytesIO(data)) as image:
        out = io.BytesIO()
        png_able = image if image.mode in _PNG_MODES else image.convert("RGB")
        png_able.save(out, format="PNG")
    return out.getvalue()


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temp file beside `path`, flush it to disk, then rename over `path`."""
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise


def _sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _file_url(path: Path) -> str:
    return path.resolve().as_uri()
