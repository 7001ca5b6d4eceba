"""Results that fit the client: pages of a list kept under a budget of characters, and the cursor
(`after`) that continues a list where its page ended.

Claude Code cuts a tool result over 25,000 tokens (`MAX_MCP_OUTPUT_TOKENS`) and moves one over
50,000 characters to a file, leaving the model a short preview, unless the tool declares a larger
size in `_meta["anthropic/maxResultSizeChars"]`. So a default page here stays under 80,000
characters of text (20,000 tokens at about 4 characters each), and each tool declares that size.

A cursor names the sort keys of the last item of a page, not its index, so the next page starts
right after it even when items before or after it were added, resolved or removed meanwhile.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from ..errors import InvalidInput
from ..models import JsonObject, to_json
from ..store.reads import Position

DEFAULT_BUDGET = 80_000
"""Characters of text a result carries by default: 20,000 tokens at 4 characters a token."""
RESULT_SIZE_META: dict[str, Any] = {"anthropic/maxResultSizeChars": DEFAULT_BUDGET}
"""A tool's `_meta`: tells Claude Code our results fit in this many characters, so it keeps them inline."""
# What a result takes besides its items: braces, `count`, `more`, `after` and the list's own brackets.
_ENVELOPE = 400


class PageBudget:
    """Decides which items of a list fit in the text of one result, as a `take` callback.

    Each item is measured as it will appear in the 2-space indented result: its own text, indented
    `depth` levels deeper, and the separator before the next. `views` keeps every item it was asked
    about, so the result is built from exactly what was measured.
    """

    def __init__(self, budget: int = DEFAULT_BUDGET, *, depth: int = 2) -> None:
        self.left = budget - _ENVELOPE
        self._indent = 2 * depth
        self.views: list[JsonObject] = []

    def take_view(self, view: JsonObject) -> bool:
        """Whether `view` still fits; it is kept either way (the caller keeps only what it took)."""
        self.views.append(view)
        text = to_json(view, indent=2)
        return self.take_size(len(text) + self._indent * (text.count("\n") + 1) + 2)

    def take_size(self, size: int) -> bool:
        """Whether `size` more characters still fit (they are counted either way)."""
        self.left -= size
        return self.left >= 0


def encode_cursor(key: list[Any]) -> str:
    """An opaque `after` value naming one position in a list."""
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode("ascii").rstrip("=")


def _decode(text: str) -> Any:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return orjson.loads(raw)
    except (binascii.Error, ValueError):
        return None


_BAD_CURSOR = "after must be the `after` value a previous page of this list returned."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def position_cursor(position: Position) -> str:
    """The `after` value for a page that ended at `position` in the store's pending list."""
    return encode_cursor(list(position))


def decode_position(text: str) -> Position:
    """The store position an `after` value names; raises `InvalidInput` for anything else."""
    key = _decode(text)
    if isinstance(key, list) and len(key) == 4 and isinstance(key[0], str) and all(_is_int(part) for part in key[1:]):
        return (key[0], key[1], key[2], key[3])
    raise InvalidInput("after", _BAD_CURSOR)


def id_cursor(item_id: str) -> str:
    """The `after` value for a page that ended at the item `item_id` (lists without store positions)."""
    return encode_cursor(["id", item_id])


def decode_id(text: str) -> str:
    """The item id an `id_cursor` value names; raises `InvalidInput` for anything else."""
    key = _decode(text)
    if isinstance(key, list) and len(key) == 2 and key[0] == "id" and isinstance(key[1], str):
        return key[1]
    raise InvalidInput("after", _BAD_CURSOR)


def cursor_argument(args: dict[str, Any] | Any) -> str | None:
    """The `after` argument: a non-empty string, or absent."""
    value = args.get("after")
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidInput("after", _BAD_CURSOR)
    return value
