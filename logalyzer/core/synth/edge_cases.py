"""Edge cases, placed on fixed devices of any fleet of >= 3 devices x >= 2 hours (labels in each
truth session's `edge_cases` are computed from the written data, so they also mark natural
occurrences): device 0: playback before the first ChangeContent (`pre_first_change`), a
VideoFreeze `state=start` that never ends (`unclosed_episode`), three dropped VAR lines
(`seq_gap`); device 1: standby in the middle of a VOD session (`standby_mid_playback`), a
session cut by a forced file rotation (`spans_files`); device 2: the player goes silent for 40
minutes, then re-tunes (`silent_gap`). Also `log_end` (cut by the end of the log) and `new_year`
(local year changes inside the session, e.g. with start=2023-12-31 22:00 UTC and hours >= 3).
Every event type of section 3 occurs on devices 0-2. Anomalous sessions (`ANOMALY_KINDS`, the
kind rotating fleet-wide so all occur) are drawn with probability `anomaly_rate` per session.

A mixin of :class:`.timeline._Planner`; the labels themselves come from :mod:`.truth`.
"""

from __future__ import annotations

from .spec import _MIN


class _EdgeCases:
    """Scripted edge cases (fixed devices, first sessions, so 2 hours always hold them)."""

    def pre_first_playback(self, t: int) -> int:
        """Device 0: the player resumes the last channel at boot without a ChangeContent."""
        self.emit_items(
            t,
            [
                (0, "FirstFrame", self.first_frame(1650)),
                (15000, "BufferingStart", {}),
                (16400, "BufferingEnd", {"dur_ms": 1390}),
                (40000, "DisplayDrop", {"dropped": 3, "window_ms": 1000}),
            ],
        )
        return t + 70000

    def s_unclosed(self, t: int) -> int:
        self.emit_items(
            t,
            [
                (0, "ChangeContent", self.change("live")),
                (900, "FirstFrame", self.first_frame(900)),
                (30000, "BlackScreen", {"dur_ms": 640, "reason": "decoder_reset"}),
                (95000, "VideoFreeze", {"state": "start", "pos": 95000}),
            ],
        )
        return t + 140000

    def s_seq_gap(self, t: int) -> int:
        dd = {"dropped": 2, "window_ms": 5000}
        self.emit_items(
            t,
            [
                (0, "ChangeContent", self.change("vod")),
                (1200, "FirstFrame", self.first_frame(1200)),
                (60000, "TrickMode", {"mode": "PAUSE", "rate": 0, "pos": 58000}),
                (90000, "TrickMode", {"mode": "PLAY", "rate": 1, "pos": 58000}),
                (120000, "DisplayDrop", dict(dd)),
                (150000, "DisplayDrop", dict(dd), False, True),
                (180000, "DisplayDrop", dict(dd), False, True),
                (210000, "DisplayDrop", dict(dd)),
                (240000, "TrickMode", {"mode": "FF", "rate": 8, "pos": 178000}, False, True),
                (250000, "TrickMode", {"mode": "PLAY", "rate": 1, "pos": 258000}),
            ],
        )
        return t + 6 * _MIN

    def s_standby_mid(self, t: int) -> int:
        cc = self.change("vod")
        self.emit_items(
            t,
            [
                (0, "ChangeContent", cc),
                (1400, "FirstFrame", self.first_frame(1400)),
                (60000, "TrickMode", {"mode": "FF", "rate": 8, "pos": 60000}),
                (75000, "TrickMode", {"mode": "PLAY", "rate": 1, "pos": 180000}),
                (150000, "BlackScreen", {"state": "start", "reason": "signal_loss"}),
                (153000, "BlackScreen", {"state": "end", "dur_ms": 2990}),
            ],
        )
        t = self.standby(t + 6 * _MIN, 8 * _MIN)
        return self.resume(t, cc["cid"], "vod")

    def resume(self, t: int, cid: str, src: str) -> int:
        """The box comes back to the same content: a short clean session."""
        self.emit_items(
            t,
            [
                (0, "ChangeContent", self.change(src, cid)),
                (800, "FirstFrame", self.first_frame(800)),
            ],
        )
        return t + 3 * _MIN

    def s_spans_files(self, t: int) -> int:
        self.forced.append(t + 12 * _MIN)
        self.emit_items(
            t,
            [
                (0, "ChangeContent", self.change("live")),
                (700, "FirstFrame", self.first_frame(700)),
                (5 * _MIN, "VideoFreeze", {"state": "start", "pos": 1000}),
                (5 * _MIN + 2500, "VideoFreeze", {"state": "end", "dur_ms": 2480}),
                (7 * _MIN, "ResolutionChange", {"from": "1920x1080", "to": "1280x720"}),
                (9 * _MIN, "HdcpStatus", {"ok": True, "version": "2.2"}),
                (15 * _MIN, "ResolutionChange", {"from": "1280x720", "to": "1920x1080"}),
                (18 * _MIN, "DisplayDrop", {"dropped": 4, "window_ms": 1000}),
            ],
        )
        return t + 24 * _MIN

    def s_silent_gap(self, t: int) -> int:
        cc = self.change("live")
        self.emit_items(
            t,
            [
                (0, "ChangeContent", cc),
                (1100, "FirstFrame", self.first_frame(1100)),
                (2 * _MIN, "BufferingStart", {}),
                (2 * _MIN + 2100, "BufferingEnd", {"dur_ms": 2100}),
                (5 * _MIN, "DisplayDrop", {"dropped": 6, "window_ms": 1000}),
            ],
        )
        return self.resume(t + 45 * _MIN, cc["cid"], "live")  # 40 silent minutes, re-tune

    def s_coverage(self, t: int) -> int:
        self.emit_items(
            t,
            [
                (0, "ChangeContent", self.change("live")),
                (950, "FirstFrame", self.first_frame(950)),
                (
                    2 * _MIN,
                    "PlaybackError",
                    {"code": 6006, "fatal": False, "msg": "audio underrun"},
                ),
            ]
            + [(4 * _MIN + off, *rest) for off, *rest in self.incident("hdmi")[1]]
            + [(6 * _MIN, "ResolutionChange", {"from": "1920x1080", "to": "3840x2160"})],
        )
        return t + 8 * _MIN
