"""Rotated gzip files of one device, with their markers and the overlap between them.

Every file starts with its markers (`== dumpstate: ...` and `------ SYSTEM LOG ...` for some
devices, then `--------- beginning of main`); file k+1 then repeats the last `overlap_lines`
content lines of file k (markers are never part of the overlap) and continues. Files are named
after the local time of their first line; gzip header mtime = the file's start, no file name
in the gzip header, so the bytes depend on the spec only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .spec import MARKER_MAIN, FleetSpec, VarEvent

try:
    from isal import igzip as _gzip
except ImportError:  # pragma: no cover - isal is a dependency, gzip keeps us working without it
    import gzip as _gzip

if TYPE_CHECKING:
    from .render import _Header
    from .timeline import _Device


class _DeviceWriter:
    """Streams one device's lines into rotated gzip files with the overlap between them."""

    def __init__(
        self,
        out_dir: Path,
        rxid: str,
        header: _Header,
        dev: _Device,
        spec: FleetSpec,
        forced: list[int],
        progress,
    ):
        self.dir = out_dir / rxid
        self.dir.mkdir(parents=True, exist_ok=True)
        self.header, self.dev, self.progress = header, dev, progress
        self.limit = max(1, int(spec.rotate_mb * 1_000_000))
        self.overlap = max(0, int(spec.overlap_lines))
        self.min_new = self.overlap + 1
        self.forced = sorted(forced)
        self.files: list[Path] = []
        self.lines = self.bytes = 0
        self._gz = self._raw = None
        self._cur_bytes = self._cur_new = 0
        self._last_ts = 0
        self._tail: list[str] = []
        self._tail_ts: list[int] = []

    def _markers(self, first_ts: int) -> list[str]:
        out = []
        if self.dev.dumpstate:
            when = self.header.local_dt(first_ts).strftime("%Y-%m-%d %H:%M:%S")
            out.append("== dumpstate: " + when)
            out.append("------ SYSTEM LOG (logcat -v %s -d *:v) ------" % self.dev.variant)
        return out + [MARKER_MAIN]

    def _open(self, first_ts: int) -> None:
        first_ts = self._tail_ts[0] if self._tail else first_ts
        t = first_ts
        while True:
            name = "logcat_%s.log.gz" % self.header.local_dt(t).strftime("%Y%m%dT%H%M%S")
            if all(p.name != name for p in self.files):
                break
            t += 1000
        path = self.dir / name
        self._raw = open(path, "wb")
        self._gz = _gzip.GzipFile(
            filename="", mode="wb", compresslevel=1, fileobj=self._raw, mtime=first_ts // 1000
        )
        self.files.append(path)
        self._cur_bytes = self._cur_new = 0
        head = self._markers(first_ts) + self._tail
        self._write(head)

    def _write(self, lines: list[str], data: bytes | None = None) -> None:
        if not lines:
            return
        if data is None:
            data = ("\n".join(lines) + "\n").encode("utf-8")
        self._gz.write(data)
        n = len(data)
        self._cur_bytes += n
        self.bytes += n
        self.lines += len(lines)
        if self.progress:
            self.progress(n)

    def _close(self) -> None:
        if self._gz is not None:
            self._gz.close()
            self._raw.close()
            os.utime(self.files[-1], (self._last_ts / 1000, self._last_ts / 1000))
            self._gz = self._raw = None

    def feed(
        self, lines: list[str], ts: np.ndarray, sp_pos: list[int], sp_ev: list[VarEvent | None]
    ) -> None:
        """Write one chunk (time-ordered); rotate on size or at a forced time inside it."""
        i, n = 0, len(lines)
        while i < n:
            if self._gz is None:
                self._open(int(ts[i]))
            j, rotate, forced_hit = n, False, False
            while self.forced and self.forced[0] <= ts[n - 1]:
                k = int(np.searchsorted(ts, self.forced[0], "left"))
                if k > i:  # rotate right before the first line at/after the forced time
                    j, rotate, forced_hit = k, True, True
                    break
                self.forced.pop(0)  # due now: rotate unless this file holds only its overlap
                if self._cur_new:
                    j, rotate = i, True
                    break
            data = ("\n".join(lines[i:j]) + "\n").encode("utf-8") if j > i else b""
            budget = self.limit - self._cur_bytes
            if len(data) > budget:
                sizes = np.fromiter(
                    (len(x.encode("utf-8")) + 1 for x in lines[i:j]), np.int64, j - i
                )
                fit = int(np.searchsorted(np.cumsum(sizes), budget, "right"))
                fit = max(fit, self.min_new - self._cur_new, 0)
                if fit < j - i:
                    j, rotate, forced_hit = i + fit, True, False
                    data = ("\n".join(lines[i:j]) + "\n").encode("utf-8") if j > i else b""
            if forced_hit:
                self.forced.pop(0)
            if j > i:
                self._write(lines[i:j], data)
                self._cur_new += j - i
                self._last_ts = int(ts[j - 1])
                self._update_tail(lines, ts, i, j)
                fidx = len(self.files) - 1
                for p, ev in zip(sp_pos, sp_ev):
                    if i <= p < j and ev is not None and ev.file_index is None:
                        ev.file_index = fidx
            if rotate:
                self._close()
            i = j

    def _update_tail(self, lines, ts, i, j) -> None:
        n = self.overlap
        if n == 0:
            return
        if j - i >= n:
            self._tail, self._tail_ts = lines[j - n : j], ts[j - n : j].tolist()
        else:
            self._tail = (self._tail + lines[i:j])[-n:]
            self._tail_ts = (self._tail_ts + ts[i:j].tolist())[-n:]

    def close(self) -> None:
        self._close()
