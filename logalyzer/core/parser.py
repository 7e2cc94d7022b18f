"""Logcat line headers → columns, a chunk of lines at a time, with Arrow column operations.

A :class:`FileParser` parses the lines of one file, in order, chunk by chunk (it keeps the state
that crosses chunks: the year, the last wall-clock time, the dumpstate anchor). Each chunk goes
through the header variants of LOG_FORMAT.md section 2 as RE2 regular expressions over whole
Arrow arrays; only the lines a variant did not match are tried against the next one, so the
common case costs one pass. Before them, every header but the kernel's (variants 1-9) is read by
a small C extension (``_headers.c``, built by ``make setup``), about ten times cheaper than RE2; it
takes only lines it reads exactly as the regular expressions would and leaves every other
line to them (without the extension, they read every line). Python loops run only over VAR
messages.

Decisions the spec leaves open (also in the README):

- Year of a year-less header: the first such line takes, of the anchor's year and the years
  either side, the one that puts it closest to the anchor (a dumpstate header, else the date
  in the path, else the file's mtime); after that, a month that goes backwards by more than
  6 months starts the next year, and one that goes forwards by more than 6 the previous year.
- Local times that a DST change makes ambiguous are read as standard time; times it skips
  are shifted forward.
- Lines without a wall clock (kernel, unparsed, impossible dates) take the time of the
  nearest preceding wall-clock line of the file (``ts_inferred``); lines before the file's
  first wall-clock line take the first one that follows in the same chunk, else stay null.
- Kernel lines: tag ``kernel``, level from the ``<N>`` syslog priority when present (else
  null), uptime in ``uptime_s``.
- A header's time must fall in 1970-01-01 .. 2099-12-31 UTC (:data:`TS_MIN_US`,
  :data:`TS_MAX_US`); any other is an impossible date (status ``unparsed``, raw line kept).
- ``line_key``, the line's own clock as its text writes it, in microseconds: for a wall-clock
  header ((year as written, else 0) x 13 + month) x 32 + day, then the time of day (no zone,
  no inferred year: the same text always gives the same key, whatever ``LOGALYZER_TZ`` or the
  file's anchor); for an epoch header the epoch; for a kernel line -1 - its uptime (negative:
  kernel lines and logcat lines beside them in a file fall in key ranges of their own,
  ``store.lines.key_ranges``); none for a line without a header. It is the ordered half of
  the idempotency check (``store.lines``): a line's twin has the same key, so looking in the
  chunk's keys is enough.
- Markers (``--------- beginning of``, ``------ ... ------``, ``== dumpstate:``, lines of
  ``=``) are counted, not stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from logalyzer.core.md5lines import md5_lines, string_buffers
from logalyzer.core.storable import dumps
from logalyzer.core.var import parse_var

try:
    from logalyzer.core._headers import scan as _scan_headers
except ImportError:  # installed without a C compiler: RE2 reads every line
    _scan_headers = None

HEADERS_COMPILED = _scan_headers is not None

_YEAR = r"(?P<yr>\d{4})-"
_MD = r"(?P<mo>\d\d)-(?P<dd>\d\d)"
_TIME = r"(?P<hms>\d\d:\d\d:\d\d)(?:[.,](?P<frac>\d{1,9}))?"
_IDS = r"\s+(?P<pid>\d+)\s+(?P<tid>\d+)\s+(?P<lvl>[VDIWEFAS])\s+(?P<rest>.*)$"
_UID = r"\s+(?P<uid>[A-Za-z_][\w.]*|\d+)"
_TZ = r"\s*(?P<tz>Z|UTC|GMT|[+-]\d\d:?\d\d)"

#: Header variants, most common first. Each is kept free of ambiguous optional parts, so RE2
#: extracts it in one pass (a single regex with every option costs 4x as much per line). The
#: part after the level, ``rest``, is split into tag and message on the first ": " afterwards.
VARIANTS: dict[str, str] = {
    # 1, 3: threadtime, usec / nsec
    "threadtime": rf"^{_MD} {_TIME}{_IDS}",
    # 2: threadtime with year (and usec / nsec)
    "year": rf"^{_YEAR}{_MD} {_TIME}{_IDS}",
    # 5: uid column, with or without year
    "uid": rf"^(?:{_YEAR})?{_MD} {_TIME}{_UID}{_IDS}",
    # 4, 9: zone suffix / ISO-8601 with T and Z or an offset (and any combination with uid)
    "zone": rf"^(?:{_YEAR})?{_MD}[T ]\s*{_TIME}{_TZ}(?:{_UID})?{_IDS}",
    "iso": rf"^{_YEAR}{_MD}T{_TIME}(?:{_TZ})?(?:{_UID})?{_IDS}",
    # 8: Android Studio export
    "studio": rf"^(?:{_YEAR})?{_MD}\s+{_TIME}\s+(?P<pid>\d+)-(?P<tid>\d+)/\S*\s+"
    r"(?P<lvl>[VDIWEFAS])/(?P<rest>.*)$",
    # 7: logcat -v time
    "time": rf"^(?:{_YEAR})?{_MD}\s+{_TIME}(?:\s+(?P<tz>[+-]\d\d:?\d\d))?\s+(?P<lvl>[VDIWEFAS])/"
    r"(?P<tag>.*?)\s*\(\s*(?P<pid>\d+)\)(?:: (?P<msg>.*)|:$)",
    # 6: epoch seconds, right-aligned
    "epoch": rf"^\s*(?P<epoch>\d{{9,}}(?:\.\d+)?)(?:{_UID})?{_IDS}",
    # 10: kernel (dmesg, Amlogic's [uptime@cpu])
    "kernel": r"^(?:<(?P<prio>\d)>)?\[\s*(?P<uptime>\d+\.\d+)(?:@\d+)?\]\s?(?P<msg>.*)$",
}
_REGEXES = list(VARIANTS.values())
#: The groups the compiled scanner fills, in its order; the others stay null for its lines.
_SCANNED = (
    "yr", "mo", "dd", "hms", "frac", "tz", "epoch", "uid", "pid", "tid", "lvl", "tag", "msg"
)  # fmt: skip
_THREADTIME, _WITH_YEAR, _WITH_UID, _ZONE, _EPOCH = (
    list(VARIANTS).index(v) for v in ("threadtime", "year", "uid", "zone", "epoch")
)
_MARKER = r"^(?:-{9} (?:beginning of|switch to) |-{6,} .*-{6,}\s*$|={2,}\s*$|== dumpstate: )"
_DUMPSTATE = r"^== dumpstate: (?P<d>\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)"
_KERNEL_LEVEL = np.array(list("FFFEWIID"))
#: The wall-clock range a header may name, [1970-01-01, 2100-01-01) UTC. A box whose clock
#: was never set says 1970; a date outside the range (a 20-digit epoch is the year 294247) is
#: an impossible date: the line is stored unparsed, its raw text kept.
TS_MIN_US = 0
TS_MAX_US = 4_102_444_800 * 1_000_000
#: ``line_key`` of a line without one (stored as null).
NO_KEY = np.iinfo(np.int64).min

#: Arrow schema of a parsed chunk, in the column order of the staging table.
SCHEMA = pa.schema(
    [
        ("line_md5", pa.binary(16)),
        ("line_key", pa.int64()),
        ("line_no", pa.int64()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("ts_inferred", pa.bool_()),
        ("uptime_s", pa.float64()),
        ("pid", pa.int32()),
        ("tid", pa.int32()),
        ("uid", pa.string()),
        ("level", pa.string()),
        ("tag", pa.string()),
        ("message", pa.string()),
        ("status", pa.string()),
        ("truncated", pa.bool_()),
        ("category", pa.string()),
        ("function", pa.string()),
        ("event_type", pa.string()),
        ("data", pa.string()),
    ]
)
_OPTIONAL = frozenset({"yr", "frac", "tz", "uid", "prio", "tid"})  # groups a variant may skip
FIELDS = (
    "yr",
    "mo",
    "dd",
    "hms",
    "frac",
    "tz",
    "epoch",
    "uptime",
    "prio",
    "uid",
    "pid",
    "tid",
    "lvl",
    "tag",
    "msg",
    "rest",
)


@dataclass
class ParseStats:
    lines: int = 0
    markers: int = 0
    unparsed: int = 0
    partial: int = 0  # VAR lines read only in part
    var: int = 0
    kernel: int = 0


@dataclass
class FileParser:
    """Parses the lines of one file in order. ``anchor`` is the year anchor (naive local time).

    ``compiled=False`` reads every header with RE2 (the tests compare both ways)."""

    rxid: str
    tz: str = "UTC"
    anchor: datetime | None = None
    compiled: bool = HEADERS_COMPILED
    stats: ParseStats = field(default_factory=ParseStats)
    _year: int | None = None  # year of the last year-less wall-clock line
    _month: int | None = None
    _last_us: int | None = None  # last wall-clock time seen, UTC epoch microseconds
    _line_no: int = 0
    _order: list[int] = field(default_factory=lambda: list(range(len(VARIANTS))))

    def __post_init__(self) -> None:
        self._zone = ZoneInfo(self.tz)
        self._prefix = (self.rxid + "\n").encode()

    # ------------------------------------------------------------------ public
    def parse(self, lines: pa.StringArray, truncated: np.ndarray | None = None) -> pa.Table:
        """Parse the next chunk of the file's lines; markers are counted and dropped.

        ``truncated`` marks the lines the reader cut at the length limit.
        """
        n = len(lines)
        if truncated is None:
            truncated = np.zeros(n, dtype=bool)
        line_no = pa.array(np.arange(self._line_no + 1, self._line_no + n + 1))
        self._line_no += n
        self.stats.lines += n
        is_marker = pc.fill_null(pc.match_substring_regex(lines, _MARKER), False)
        if pc.any(is_marker).as_py():
            return self._parse_with_markers(lines, line_no, truncated, is_marker)
        return self._parse_segment(lines, line_no, truncated)

    # ------------------------------------------------------------------ markers
    def _parse_with_markers(self, lines, line_no, truncated, is_marker) -> pa.Table:
        """Split the chunk at dumpstate headers (each re-anchors the year) and drop markers."""
        marks = np.flatnonzero(is_marker.to_numpy(zero_copy_only=False))
        self.stats.markers += len(marks)
        pieces, start = [], 0
        for i in marks:
            if i > start:
                pieces.append(
                    self._parse_segment(lines[start:i], line_no[start:i], truncated[start:i])
                )
            start = i + 1
            ds = pc.extract_regex(lines[i : i + 1], _DUMPSTATE)[0]
            if ds.is_valid:
                self._set_anchor(datetime.fromisoformat(ds["d"].as_py().replace("T", " ")))
        if start < len(lines):
            pieces.append(self._parse_segment(lines[start:], line_no[start:], truncated[start:]))
        if not pieces:
            return SCHEMA.empty_table()
        return pa.concat_tables(pieces)

    def _set_anchor(self, when: datetime) -> None:
        self.anchor, self._year, self._month = when, when.year, when.month

    # ------------------------------------------------------------------ headers
    def _match_headers(self, lines: pa.StringArray) -> tuple[dict[str, pa.Array], np.ndarray]:
        """Try each variant on the lines the previous ones left; return full-length fields."""
        n = len(lines)
        kind = np.full(n, -1, dtype=np.int8)  # index into VARIANTS, -1 = unparsed
        cols: dict[str, list] = {f: [] for f in FIELDS}
        idx_parts: list[np.ndarray] = []
        remaining = np.arange(n)
        if self.compiled and n:
            ok, scanned = self._scan(lines)
            if ok.any():
                hit = remaining[ok]
                kind[hit] = np.select(  # which variant: only "parsed" and "kernel" matter
                    [scanned[g].is_valid() for g in ("epoch", "tz", "uid", "yr")],
                    [_EPOCH, _ZONE, _WITH_UID, _WITH_YEAR],
                    _THREADTIME,
                )
                idx_parts.append(hit)
                for f in FIELDS:
                    cols[f].append(scanned.get(f) or pa.nulls(len(hit), pa.string()))
                remaining = remaining[~ok]
        hits = np.zeros(len(_REGEXES), dtype=np.int64)
        for k in self._order:
            regex = _REGEXES[k]
            if len(remaining) == 0:
                break
            subset = lines if len(remaining) == n else lines.take(pa.array(remaining))
            found = pc.extract_regex(subset, regex)
            ok = found.is_valid().to_numpy(zero_copy_only=False)
            if not ok.any():
                continue
            hit = remaining[ok]
            hits[k] = len(hit)
            kind[hit] = k
            idx_parts.append(hit)
            matched = found if len(hit) == len(ok) else found.filter(pa.array(ok))
            names = {f.name for f in matched.type}
            for f in FIELDS:
                cols[f].append(matched.field(f) if f in names else pa.nulls(len(hit), pa.string()))
            remaining = remaining[~ok]
        # A file keeps one header variant: try the ones this chunk used most first next time.
        self._order = sorted(self._order, key=lambda k: -hits[k])
        if not idx_parts:
            return {f: pa.nulls(n, pa.string()) for f in FIELDS}, kind
        # Scatter the per-variant pieces back to line order; unmatched lines get nulls. The
        # common case, one variant matching every line, needs no scatter.
        take = None
        if len(idx_parts) > 1 or len(idx_parts[0]) < n:
            order = np.concatenate(idx_parts)
            where = np.full(n, -1, dtype=np.int64)
            where[order] = np.arange(len(order))
            take = pa.array(where, mask=where < 0)
        out = {}
        for f in FIELDS:
            col = (
                cols[f][0]
                if len(cols[f]) == 1
                else pa.chunked_array(cols[f], pa.string()).combine_chunks()
            )
            if f in _OPTIONAL and col.null_count < len(col):  # an empty group did not take part
                col = pc.if_else(pc.equal(col, ""), None, col)
            out[f] = col if take is None else col.take(take)
        self._split_rest(out, kind)
        return out, kind

    @staticmethod
    def _scan(lines: pa.StringArray) -> tuple[np.ndarray, dict[str, pa.Array]]:
        """The lines the compiled scanner read (mask) and their groups (over those lines)."""
        first, offsets, data = string_buffers(lines)
        ok, fields = _scan_headers(offsets, data, first, len(lines))
        m = int(np.frombuffer(ok, np.uint8).sum())
        return np.frombuffer(ok, np.bool_), {
            name: pa.StringArray.from_buffers(
                m, pa.py_buffer(o), pa.py_buffer(d), v and pa.py_buffer(v), nulls
            )
            for name, (o, d, v, nulls) in zip(_SCANNED, fields)
        }

    @staticmethod
    def _split_rest(out: dict[str, pa.Array], kind: np.ndarray) -> None:
        """``tag: message`` → tag (trimmed) and message, on the first ": " (LOG_FORMAT.md §2).

        A rest that ends in ":" with no ": " is a tag with an empty message; a rest with
        neither is not a logcat line after all (its kind becomes -1, unparsed).
        """
        rest = out["rest"]
        has = ~pc.is_null(rest).to_numpy(zero_copy_only=False)
        if not has.any():
            return
        parts = pc.split_pattern(rest, ": ", max_splits=1)
        offsets = parts.offsets.to_numpy()
        values = parts.values
        two = (np.diff(offsets) == 2) & has
        bare = (
            has & ~two & pc.fill_null(pc.ends_with(rest, ":"), False).to_numpy(zero_copy_only=False)
        )
        kind[has & ~two & ~bare] = -1
        first = np.where(has, offsets[:-1], 0)
        tag = pc.utf8_rtrim_whitespace(values.take(pa.array(first, mask=~(two | bare))))
        if bare.any():
            tag = pc.replace_with_mask(
                tag,
                pa.array(bare),
                pc.utf8_rtrim_whitespace(
                    pc.utf8_slice_codeunits(rest.filter(pa.array(bare)), 0, -1)
                ),
            )
        msg = values.take(pa.array(np.where(two, offsets[:-1] + 1, 0), mask=~two))
        msg = pc.if_else(pa.array(bare), "", msg)
        out["tag"] = pc.coalesce(tag, out["tag"])
        out["msg"] = pc.coalesce(msg, out["msg"])

    # ------------------------------------------------------------------ one segment
    def _parse_segment(
        self, lines: pa.StringArray, line_no: pa.Array, truncated: np.ndarray
    ) -> pa.Table:
        n = len(lines)
        f, kind = self._match_headers(lines)
        ts_us, wall, key = self._timestamps(f, n)
        parsed = kind >= 0
        kernel = kind == list(VARIANTS).index("kernel")
        bad_date = parsed & ~kernel & ~wall  # a header whose date is impossible
        parsed &= ~bad_date
        key[kind < 0] = NO_KEY  # no header at all (a bad date keeps the key its text gives)
        ts_us, inferred = self._infer_missing(ts_us, wall)

        level = f["lvl"]
        if kernel.any():
            prio = f["prio"].to_numpy(zero_copy_only=False)
            klevel = [(_KERNEL_LEVEL[int(p)] if p is not None else None) for p in prio[kernel]]
            level = _scatter(level, kernel, pa.array(klevel, pa.string()))
        tag = _scatter(f["tag"], kernel, pa.array(["kernel"] * int(kernel.sum()), pa.string()))
        unparsed = ~parsed
        message = pc.if_else(pa.array(unparsed), lines, f["msg"])
        message = pc.fill_null(message, "")
        if unparsed.any():  # keep the raw line whole; its header fields mean nothing
            mask = pa.array(unparsed)
            level, tag = pc.if_else(mask, None, level), pc.if_else(mask, None, tag)
        status = np.where(unparsed, "unparsed", "ok").astype(object)

        var_cols = self._var_columns(tag, message, status, n)
        self.stats.unparsed += int(unparsed.sum())
        self.stats.kernel += int(kernel.sum())

        bad = pa.array(bad_date)
        return pa.table(
            [
                self._md5(lines),
                pa.array(key, mask=key == NO_KEY),
                line_no,
                _timestamp_array(ts_us),
                pa.array(inferred),
                pc.cast(f["uptime"], pa.float64()),
                _int32(pc.if_else(bad, None, f["pid"])),
                _int32(pc.if_else(bad, None, f["tid"])),
                pc.if_else(bad, None, f["uid"]),
                level,
                tag,
                message,
                pa.array(status, pa.string()),
                pa.array(truncated if truncated is not None else np.zeros(n, bool)),
                *var_cols,
            ],
            schema=SCHEMA,
        )

    def _md5(self, lines: pa.StringArray) -> pa.Array:
        """MD5 of (RxID, newline, raw line), 16 bytes: the idempotency key (LOG_FORMAT.md §2)."""
        return md5_lines(self._prefix, lines)

    # ------------------------------------------------------------------ time
    def _timestamps(
        self, f: dict[str, pa.Array], n: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """UTC epoch microseconds (float, NaN = none), the wall-clock mask, and each line's
        ``line_key`` (:data:`NO_KEY` = none; the module docstring says what it is)."""
        ts = np.full(n, np.nan)
        key = np.full(n, NO_KEY, dtype=np.int64)
        mo = _ints(f["mo"])
        dated = mo >= 0
        if dated.any():
            yr = _ints(f["yr"])[dated]
            months = mo[dated]
            days = _ints(f["dd"])[dated]
            if (yr < 0).any():
                yr = np.where(yr >= 0, yr, self._infer_years(months, days, yr))
            hms = f["hms"].filter(pa.array(dated))
            hh, mi, ss = (_ints(pc.utf8_slice_codeunits(hms, a, a + 2)) for a in (0, 3, 6))
            frac = f["frac"].filter(pa.array(dated))
            micros = _ints(
                pc.utf8_slice_codeunits(pc.utf8_rpad(pc.fill_null(frac, "0"), 6, "0"), 0, 6)
            )
            valid = (months >= 1) & (months <= 12) & (days >= 1) & (days <= _month_days(yr, months))
            valid &= (hh <= 23) & (mi <= 59) & (ss <= 60)
            local = (
                _days_from_civil(yr, months, days) * 86400 + hh * 3600 + mi * 60 + ss
            ) * 1_000_000 + micros
            off = self._offsets_us(f["tz"].filter(pa.array(dated)), local)
            ts[np.flatnonzero(dated)] = np.where(valid, local - off, np.nan)
            # The key reads the text alone, valid or not: the inferred year (Feb 29) or the
            # zone must not decide whether two copies of a line get the same key.
            given = _ints(f["yr"])[dated]  # the year as written (-1: none), not as inferred
            clock = ((np.maximum(given, 0) * 13 + months) * 32 + days) * 86400
            key[np.flatnonzero(dated)] = (clock + hh * 3600 + mi * 60 + ss) * 1_000_000 + micros
        ep = f["epoch"]
        if ep.null_count < n:
            has = ~pc.is_null(ep).to_numpy(zero_copy_only=False)
            ts[has] = np.round(pc.cast(ep.filter(pa.array(has)), pa.float64()).to_numpy() * 1e6)
            key[has] = np.where((ts[has] >= TS_MIN_US) & (ts[has] < TS_MAX_US), ts[has], NO_KEY)
        with np.errstate(invalid="ignore"):  # NaN compares False: stays NaN
            ts[(ts < TS_MIN_US) | (ts >= TS_MAX_US)] = np.nan
        up = f["uptime"]
        if up.null_count < n:  # a kernel line's own clock is its uptime
            has = ~pc.is_null(up).to_numpy(zero_copy_only=False)
            secs = pc.cast(up.filter(pa.array(has)), pa.float64()).to_numpy()
            key[has] = np.where(secs < 1e12, -1 - np.round(secs * 1e6), NO_KEY)
        return ts, ~np.isnan(ts), key

    def _infer_years(self, months: np.ndarray, days: np.ndarray, given: np.ndarray) -> np.ndarray:
        """Years for year-less lines: anchor for the first, then the Dec→Jan rollover rule."""
        if self._year is None:
            anchor = self.anchor or datetime.now()
            first = int(np.flatnonzero(given < 0)[0])
            m0, d0 = int(months[first]), int(max(1, min(days[first], 28)))
            cands = [y for y in (anchor.year - 1, anchor.year, anchor.year + 1) if 1 <= m0 <= 12]
            self._year = min(
                cands, key=lambda y: abs(datetime(y, m0, d0) - anchor), default=anchor.year
            )
            self._month = m0
        prev = np.concatenate(([self._month], months[:-1]))
        step = np.where(prev - months > 6, 1, np.where(months - prev > 6, -1, 0))
        years = self._year + np.cumsum(step)
        self._year, self._month = int(years[-1]), int(months[-1])
        return years

    def _offsets_us(self, tz: pa.Array, local_us: np.ndarray) -> np.ndarray:
        """UTC offset of each line, from its own zone suffix or else the fleet's zone."""
        off = np.zeros(len(local_us), dtype=np.int64)
        has_tz = ~pc.is_null(tz).to_numpy(zero_copy_only=False)
        if has_tz.any():  # few distinct suffixes: parse each once, then map the lines to them
            suffixes = pc.unique(tz.filter(pa.array(has_tz)))
            per_suffix = np.array([_parse_offset(s) for s in suffixes.to_pylist()], dtype=np.int64)
            off[has_tz] = per_suffix[pc.index_in(tz.filter(pa.array(has_tz)), suffixes).to_numpy()]
        need = ~has_tz
        if need.any() and self.tz != "UTC":
            off[need] = _zone_offsets(self._zone, local_us[need])
        return off

    def _infer_missing(self, ts: np.ndarray, wall: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Give lines without a wall clock the time of the nearest preceding one."""
        inferred = ~wall
        if inferred.any():
            filled = pa.array(ts, mask=inferred)
            if self._last_us is not None:
                first = pa.array([float(self._last_us)])
                filled = pc.fill_null_forward(pa.concat_arrays([first, filled]))[1:]
            else:
                filled = pc.fill_null_backward(pc.fill_null_forward(filled))
            ts = filled.to_numpy(zero_copy_only=False).astype(float)
        if wall.any():
            self._last_us = int(ts[np.flatnonzero(wall)[-1]])
        return ts, inferred

    # ------------------------------------------------------------------ VAR
    def _var_columns(self, tag, message, status, n) -> list[pa.Array]:
        """category, function, event_type, data for lines whose tag is VAR (else null)."""
        is_var = pc.fill_null(pc.equal(pc.utf8_lower(tag), "var"), False).to_numpy(
            zero_copy_only=False
        )
        idx = np.flatnonzero(is_var)
        if len(idx) == 0:
            return [pa.nulls(n, pa.string())] * 4
        self.stats.var += len(idx)
        cat, fn, ev, data = [], [], [], []
        for i, msg in zip(idx, message.take(pa.array(idx)).to_pylist()):
            e = parse_var(msg)
            cat.append(e.category)
            fn.append(e.function)
            ev.append(e.event_type)
            data.append(dumps(e.data) if e.data else None)
            if e.partial:
                status[i] = "partial"
                self.stats.partial += 1
        return [
            _scatter(pa.nulls(n, pa.string()), is_var, pa.array(c, pa.string()))
            for c in (cat, fn, ev, data)
        ]


# --------------------------------------------------------------------------- helpers


def _ints(arr: pa.Array) -> np.ndarray:
    """String digits → int64 numpy array, -1 where null."""
    return pc.fill_null(pc.cast(arr, pa.int64()), -1).to_numpy()


def _int32(arr: pa.Array) -> pa.Array:
    """String digits → int32, null where the number does not fit (a pid of 14 digits is junk,
    not a reason to lose the line)."""
    fits = pc.less_equal(pc.utf8_length(arr), 10)
    wide = pc.cast(pc.if_else(fits, arr, None), pa.int64())
    return pc.cast(pc.if_else(pc.less_equal(wide, 2**31 - 1), wide, None), pa.int32())


def _scatter(base: pa.Array, mask: np.ndarray, values: pa.Array) -> pa.Array:
    """``base`` with the positions in ``mask`` replaced, in order, by ``values``."""
    if not mask.any():
        return base
    return pc.replace_with_mask(base, pa.array(mask), values)


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm)."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _month_days(y: np.ndarray, m: np.ndarray) -> np.ndarray:
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    days = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 31])[np.clip(m - 1, 0, 12)]
    return days + ((m == 2) & leap)


def _parse_offset(text: str) -> int:
    """'+0100', '-05:30', 'Z', 'UTC' → offset in microseconds."""
    if text in ("Z", "UTC", "GMT"):
        return 0
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return sign * (int(digits[:2]) * 3600 + int(digits[2:4]) * 60) * 1_000_000


def _zone_offsets(zone: ZoneInfo, local_us: np.ndarray) -> np.ndarray:
    """UTC offsets of local wall times in ``zone``, vectorised through the zone's transitions.

    Offsets change only at DST transitions, so each distinct hour is resolved once.
    Ambiguous times (the repeated hour) read as standard time, skipped ones shift forward.
    """
    hours = (local_us // 3_600_000_000).astype(np.int64)
    uniq, inv = np.unique(hours, return_inverse=True)
    offs = np.empty(len(uniq), dtype=np.int64)
    for k, h in enumerate(uniq):
        naive = datetime(1970, 1, 1) + timedelta(hours=int(h))
        # fold=0 and fold=1 differ only around a transition; the smaller offset is standard
        # time in a repeated hour and the pre-transition offset (= forward) in a skipped one.
        offs[k] = (
            min(
                int(naive.replace(tzinfo=zone, fold=fold).utcoffset().total_seconds())
                for fold in (0, 1)
            )
            * 1_000_000
        )
    return offs[inv]


def _timestamp_array(ts_us: np.ndarray) -> pa.Array:
    """Float epoch microseconds (NaN = unknown) → Arrow timestamp[us, UTC]."""
    missing = np.isnan(ts_us)
    values = np.where(missing, 0, ts_us).astype(np.int64)
    return pa.array(values, mask=missing).cast(pa.timestamp("us", tz="UTC"))
