"""VAR (Video/Audio Rendering) messages: both dialects, event-type normalisation, data.

Current firmware writes ``CATEGORY|function|EventType|data``; legacy firmware writes
``[CATEGORY] function: EVENT_TYPE data``. ``data`` is ``key=value`` pairs (values may be
double-quoted and hold spaces) or one JSON object (LOG_FORMAT.md section 3).

Nothing is thrown away: a message that is short of fields, has an extra ``|`` outside a quoted
value, a broken JSON object or a key the spec does not list for its event type is still
returned with what could be read, and flagged ``partial``. Decisions the spec leaves open:

- values of the numeric keys (``dur_ms``, ``seq``, ...) become JSON numbers and of the boolean
  keys (``connected``, ``ok``, ``fatal``) JSON booleans when they parse as such; every other
  value stays a string, so ``cid=101`` and ``cid=ch101`` have the same JSON type;
- text that could not be read as ``key=value`` is kept under ``_unparsed``, a broken JSON
  object under ``_raw``;
- an unknown event type is stored as given and is *not* partial (its keys cannot be checked);
- whatever PostgreSQL could not store (``NaN``, ``1e400``, ``\\u0000``, a lone surrogate, JSON
  nested past 64 levels) is made storable by :mod:`logalyzer.core.storable`: kept as a string,
  replaced by U+FFFD, or, for too deep a nesting, kept as ``_raw`` text (partial).
"""

from __future__ import annotations

import functools
import re
from typing import Any, NamedTuple

from logalyzer.core.storable import loads, number

EVENT_KEYS: dict[str, frozenset[str]] = {
    "ChangeContent": frozenset({"cid", "src", "prev_cid"}),
    "FirstFrame": frozenset({"ttff_ms", "res", "codec"}),
    "BlackScreen": frozenset({"state", "dur_ms", "reason"}),
    "VideoFreeze": frozenset({"state", "dur_ms", "pos"}),
    "DisplayDrop": frozenset({"dropped", "window_ms"}),
    "BufferingStart": frozenset({"dur_ms"}),
    "BufferingEnd": frozenset({"dur_ms"}),
    "TrickMode": frozenset({"mode", "rate", "pos"}),
    "HdmiHotplug": frozenset({"port", "connected"}),
    "HdcpStatus": frozenset({"ok", "version"}),
    "StandbyEnter": frozenset({"reason"}),
    "StandbyExit": frozenset({"reason"}),
    "PlaybackError": frozenset({"code", "fatal", "msg"}),
    "ResolutionChange": frozenset({"from", "to"}),
    "BootInfo": frozenset({"model", "fw", "app"}),
}
EVENT_TYPES = tuple(EVENT_KEYS)
COMMON_KEYS = frozenset({"sid", "seq", "mono"})
INT_KEYS = frozenset({"ttff_ms", "dur_ms", "dropped", "window_ms", "port", "sid", "seq", "mono"})
FLOAT_KEYS = frozenset({"rate", "pos"})
BOOL_KEYS = frozenset({"connected", "ok", "fatal"})

_CANONICAL = {name.lower(): name for name in EVENT_TYPES}
_ALLOWED = {name: keys | COMMON_KEYS | {"_unparsed", "_raw"} for name, keys in EVENT_KEYS.items()}
_LEGACY_RE = re.compile(r"\[(?P<cat>[^\]]*)\]\s*(?P<fn>[^:]*?)\s*:\s*(?P<rest>.*)", re.S)
_KV_RE = re.compile(r'\s*([A-Za-z_][\w.\-]*)=("(?:[^"\\]|\\.)*"|[^\s"]*)')
_KV_ALL = re.compile(r'(?:\s*[A-Za-z_][\w.\-]*=(?:"(?:[^"\\]|\\.)*"|[^\s"]*))*\s*')
TYPED_KEYS = INT_KEYS | FLOAT_KEYS | BOOL_KEYS


class VarEvent(NamedTuple):
    category: str | None
    function: str | None
    event_type: str | None
    data: dict[str, Any]
    partial: bool


@functools.lru_cache(maxsize=4096)
def canonical_event_type(name: str) -> str:
    """``BLACK_SCREEN``, ``black-screen`` and ``BlackScreen`` all become ``BlackScreen``.

    Unknown names come back unchanged.
    """
    return _CANONICAL.get(name.replace("_", "").replace("-", "").lower(), name)


def _typed(key: str, value: str) -> Any:
    """An unquoted value of a typed key as int / float / bool when it reads as one (a value
    ``jsonb`` cannot hold as a number, ``nan`` or ``1e400``, stays a string)."""
    if key in BOOL_KEYS:
        low = value.lower()
        return low == "true" if low in ("true", "false") else value
    return number(value, as_float=key not in INT_KEYS)


def _unquote(value: str) -> str:
    inner = value[1:-1]
    return inner.replace('\\"', '"').replace("\\\\", "\\") if "\\" in inner else inner


def parse_data(text: str) -> tuple[dict[str, Any], bool]:
    """``key=value`` pairs or a JSON object → (dict, fully_read)."""
    text = text.strip()
    if not text:
        return {}, True
    if text[0] == "{":
        try:
            obj = loads(text)
        except ValueError:  # not JSON, or nested too deep (storable.TooDeep)
            return {"_raw": text}, False
        if isinstance(obj, dict):
            return obj, True
        return {"_raw": text}, False
    if _KV_ALL.fullmatch(text):  # the common case: two C-level regex passes
        return {
            k: (_unquote(v) if v[:1] == '"' else _typed(k, v) if k in TYPED_KEYS else v)
            for k, v in _KV_RE.findall(text)
        }, True
    out: dict[str, Any] = {}  # read pair by pair up to what cannot be read
    pos = 0
    while True:
        m = _KV_RE.match(text, pos)
        if m is None or (m.end() < len(text) and not text[m.end()].isspace()):
            out["_unparsed"] = text[pos:].strip()
            return out, False
        k, v = m.groups()
        out[k] = _unquote(v) if v[:1] == '"' else _typed(k, v) if k in TYPED_KEYS else v
        pos = m.end()


def parse_var(message: str) -> VarEvent:
    """Parse the message of a VAR line (either dialect). Never raises."""
    msg = message.strip()
    if msg.startswith("["):
        m = _LEGACY_RE.match(msg)
        if m is None:
            return VarEvent(None, None, None, {"_unparsed": msg}, True)
        category, function = m.group("cat").strip(), m.group("fn").strip()
        head, _, data_text = m.group("rest").strip().partition(" ")
        if head.startswith("{"):  # no event type, data straight away
            head, data_text = "", m.group("rest")
        complete = bool(head)
    else:
        parts = msg.split("|", 3)
        if len(parts) < 3:
            return VarEvent(parts[0].strip() or None, None, None, {"_unparsed": msg}, True)
        category, function, head = parts[0].strip(), parts[1].strip(), parts[2].strip()
        data_text = parts[3] if len(parts) == 4 else ""
        complete = len(parts) == 4 and bool(head)
    event_type = canonical_event_type(head) if head else None
    data, data_ok = parse_data(data_text)
    known = _ALLOWED.get(event_type)
    keys_ok = known is None or not (data.keys() - known)
    return VarEvent(
        category or None, function or None, event_type, data, not (complete and data_ok and keys_ok)
    )
