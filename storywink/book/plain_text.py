"""Text a person typed (titles, names, page texts) kept printable: control characters
(ESC, newlines in a one-line field, NUL, ...) are refused where text enters, and replaced
where text already stored is printed to a terminal."""

from __future__ import annotations

import unicodedata
from typing import Final

_REPLACEMENT: Final = "\ufffd"


def control_character(text: str) -> str | None:
    """`U+001B` for the first control character in `text`, None when there is none.
    Format characters (e.g. the right-to-left mark) are text, not control."""
    for character in text:
        if unicodedata.category(character) == "Cc":
            return f"U+{ord(character):04X}"
    return None


def printable(text: str) -> str:
    """`text` with every control character replaced, safe on one terminal line."""
    return "".join(_REPLACEMENT if unicodedata.category(c) == "Cc" else c for c in text)
