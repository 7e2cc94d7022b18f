"""What PostgreSQL can store: text without NUL or lone surrogates, JSON that ``jsonb`` accepts.

One place for the rules, used by the ingest (VAR ``data``) and by jam-software (event details).
A value the database would refuse is changed as little as possible, so the rest of its line or
event is kept:

- NUL (``\\u0000``) and lone UTF-16 surrogates (``\\ud800``), which JSON escapes can carry but
  ``text`` and ``jsonb`` refuse, become U+FFFD;
- numbers ``jsonb`` cannot hold or Python cannot read back -- ``NaN``, ``Infinity``,
  ``-Infinity``, floats out of range (``1e400``), integers of more than
  :data:`MAX_INT_DIGITS` digits -- are kept as strings, exactly as written;
- nesting deeper than :data:`MAX_DEPTH` is not read as JSON at all (:class:`TooDeep`): the
  caller keeps the raw text instead (PostgreSQL's own limit is its stack, and Python's is a
  ``RecursionError``; 64 levels is far beyond any real log event).

:func:`dumps` never raises for a value built by :func:`loads` or by the ``key=value`` reader.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 64
MAX_INT_DIGITS = 4000  # below Python's int-from-string limit (4,300); numeric takes far more
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class TooDeep(ValueError):
    """JSON nested deeper than :data:`MAX_DEPTH`."""


def storable(text: Any) -> Any:
    """A string with NUL and lone surrogates (which PostgreSQL cannot store) replaced by
    U+FFFD; anything else unchanged."""
    return _UNSTORABLE.sub("\ufffd", text) if isinstance(text, str) else text


def number(text: str, as_float: bool = False) -> Any:
    """A number as written in a log line: an int (unless ``as_float``) or a finite float,
    else the text itself (``nan``, ``inf``, ``1e400``, ``12ab``)."""
    if not as_float and len(text) <= MAX_INT_DIGITS:
        try:
            return int(text)
        except ValueError:
            pass
    return _float(text)


def _float(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def _int(text: str) -> Any:
    return int(text) if len(text.lstrip("-")) <= MAX_INT_DIGITS else text


def loads(text: str) -> Any:
    """``json.loads`` with the rules above. Raises ValueError for text that is not JSON and
    :class:`TooDeep` for nesting past :data:`MAX_DEPTH`."""
    if _depth_bound_exceeded(text):
        raise TooDeep(f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text, parse_constant=str, parse_float=_float, parse_int=_int)
    except RecursionError as exc:  # cannot happen below MAX_DEPTH; kept as a guard
        raise TooDeep(str(exc)) from None


def _depth_bound_exceeded(text: str) -> bool:
    """Whether brackets outside strings nest deeper than MAX_DEPTH (cheap: most texts have
    fewer brackets than the bound)."""
    if text.count("{") + text.count("[") <= MAX_DEPTH:
        return False
    depth, in_str, esc = 0, False, False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "{[":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif ch in "}]":
            depth -= 1
    return False


def clean(value: Any, depth: int = 0) -> Any:
    """``value`` with every string, key and number made storable (see the module docstring);
    containers deeper than MAX_DEPTH become their JSON text."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, int):
        return value if abs(value).bit_length() < MAX_INT_DIGITS * 3 else _int_text(value)
    if depth >= MAX_DEPTH:
        return storable(repr(value))
    if isinstance(value, dict):
        return {str(storable(k)): clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v, depth + 1) for v in value]
    return storable(str(value))


def _int_text(value: int) -> str:
    try:
        return str(value)
    except ValueError:  # past Python's int-to-str digit limit
        return f"{'-' if value < 0 else ''}<integer of {abs(value).bit_length()} bits>"


def dumps(value: Any) -> str:
    """Compact JSON text ``jsonb`` accepts. The common case is one ``json.dumps``; the
    clean-up walk runs only when that text holds something unstorable."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (ValueError, RecursionError):  # NaN / inf, an int too long to print, too deep
        return _dumps_clean(value)
    if "\\u0000" in text or (not text.isascii() and _UNSTORABLE.search(text)):
        return _dumps_clean(value)
    return text


def _dumps_clean(value: Any) -> str:
    return json.dumps(clean(value), separators=(",", ":"), ensure_ascii=False)
