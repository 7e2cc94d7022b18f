"""The fleet alert rule: is a cohort's QoE measure in one window significantly above the
cohort's own trailing baseline? Pure: sums in, verdicts out (the sums come from SQL,
``alert_cells`` in sql/0014_alerts.sql; the job is :mod:`logalyzer.jobs.alerts`).

Every measure is a ratio of sums over sessions, y / x: incidents per viewing hour (x = hours),
start failures per content session and anomalous sessions per scored session (x = 1), the
rebuffer ratio (x = rebuffer + play time). Why one test for all, rather than a plain Poisson
test for counts and a binomial one for shares: incidents cluster. A freeze storm puts 20
freezes in one session, so a day's count varies far more than Poisson says, and a plain
Poisson test fired on ordinary days of small cohorts. So the test is a one-sided z test of
the window's ratio R against the baseline's R0 where the variance of each ratio is the
robust (sandwich, session-clustered) variance of a ratio estimator,

    Var(R) = n / (n - 1) * sum((y_i - R x_i)^2) / (sum x_i)^2,

floored, for the window, at the variance the count model itself gives under the baseline
(Poisson: R0 / X; binomial: R0 (1 - R0) / X), so that a window of few sessions cannot look
more certain than Poisson. p = 1 - Phi((R - R0) / sqrt(Var_window + Var_baseline)).

An alert fires when all hold (the defaults are :class:`Rule`'s, set from Settings):
- the window has at least ``min_hours`` viewing hours and ``min_sessions`` sessions, and the
  baseline at least ``min_baseline_windows`` windows with sessions and ``min_hours`` hours
  (the small-cohort rule: a cohort of one box never alerts on a day of bad luck);
- p < ``alpha`` (0.001: with ~10 cohorts x 6 measures a day, about one chance alert in 16
  days before the ratio rule below);
- R >= ``min_ratio`` x R0 (1.5: a huge cohort does not alert on a 5 % shift, significant but
  not worth waking anyone for).

A baseline of zero (no incident in a week) is taken as half an incident (half a unit of y)
over the baseline's exposure, so a single event after a quiet week is not an infinite jump.
Severity: ``critical`` when R >= ``critical_ratio`` x R0 (3) and p < alpha / 100, else
``warning``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta

#: measure -> (count model of the null variance floor, unit of y for the zero-baseline floor).
#: The names are qoe_daily's columns (and the dashboards'), the sums come from alert_cells.
MEASURES = {
    "black_screens_per_hour": "poisson",
    "freezes_per_hour": "poisson",
    "display_drops_per_hour": "poisson",
    "rebuffer_ratio": "time",
    "video_start_failure_rate": "binomial",
    "anomalous_share": "binomial",
}
#: y's unit for the zero-baseline floor: an incident, a failed start, 1 s of rebuffering (ms).
_UNIT = {"poisson": 1.0, "binomial": 1.0, "time": 1000.0}
GRAINS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
COHORT_KINDS = ("fw", "model")


@dataclass(frozen=True)
class Sums:
    """Additive sums of a cell (or a cohort): sessions, y, x, y², yx, x²."""

    n: float = 0.0
    num: float = 0.0
    den: float = 0.0
    num2: float = 0.0
    numden: float = 0.0
    den2: float = 0.0

    def __add__(self, o: Sums) -> Sums:
        return Sums(*(getattr(self, f.name) + getattr(o, f.name) for f in fields(Sums)))

    def __sub__(self, o: Sums) -> Sums:
        return Sums(*(getattr(self, f.name) - getattr(o, f.name) for f in fields(Sums)))

    def ratio(self, measure: str) -> float | None:
        """The measure over these sessions: sum y / sum x (the rebuffer ratio capped at 1,
        as qoe_rebuffer_ratio); None without exposure."""
        if self.den <= 0:
            return None
        r = self.num / self.den
        return min(r, 1.0) if MEASURES[measure] == "time" else r

    def robust_var(self, r: float) -> float:
        """Session-clustered variance of the ratio estimator around ``r``."""
        if self.n < 2 or self.den <= 0:
            return 0.0
        ss = self.num2 - 2 * r * self.numden + r * r * self.den2
        return max(ss, 0.0) * self.n / (self.n - 1) / (self.den * self.den)


@dataclass(frozen=True)
class Rule:
    alpha: float = 0.001
    min_ratio: float = 1.5
    min_hours: float = 10.0
    min_sessions: int = 30
    min_baseline_windows: int = 3
    critical_ratio: float = 3.0


@dataclass(frozen=True)
class Verdict:
    checked: bool  # big enough to judge (window and baseline)
    fires: bool
    value: float | None
    baseline: float | None
    ratio: float | None
    z: float
    p_value: float
    severity: str | None
    reason: str  # why it was not checked, or "" when checked

    @property
    def calm(self) -> bool:
        """Checked and not firing: resolves the cohort's open alerts on this measure."""
        return self.checked and not self.fires


def p_one_sided(z: float) -> float:
    """P(Z >= z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def judge(
    measure: str,
    window: Sums,
    window_hours: float,
    baseline: Sums,
    baseline_hours: float,
    baseline_windows: int,
    rule: Rule,
) -> Verdict:
    """The rule of the module docstring for one cohort, measure and window."""
    value, base = window.ratio(measure), baseline.ratio(measure)

    def skip(reason: str) -> Verdict:
        return Verdict(False, False, value, base, None, 0.0, 1.0, None, reason)

    if window_hours < rule.min_hours or window.n < rule.min_sessions:
        return skip(f"small window: {window_hours:.1f} h, {window.n:.0f} sessions")
    if value is None:
        return skip("no exposure in the window")
    if baseline_windows < rule.min_baseline_windows or baseline_hours < rule.min_hours:
        return skip(f"short baseline: {baseline_windows} windows, {baseline_hours:.1f} h")
    if base is None:
        return skip("no exposure in the baseline")
    model = MEASURES[measure]
    floor = max(base, 0.5 * _UNIT[model] / baseline.den)  # a quiet baseline: half a unit
    if model == "time":
        floor = min(floor, 1.0)
    null_var = {
        "poisson": floor / window.den,
        "binomial": floor * (1 - min(floor, 1.0)) / window.den,
        "time": 0.0,
    }[model]
    var = max(window.robust_var(value), null_var) + baseline.robust_var(base)
    diff = value - base
    z = diff / math.sqrt(var) if var > 0 else (math.inf if diff > 0 else 0.0)
    p = p_one_sided(z) if math.isfinite(z) else 0.0
    ratio = value / base if base > 0 else None
    fires = p < rule.alpha and value >= rule.min_ratio * floor
    severity = None
    if fires:
        critical = value >= rule.critical_ratio * floor and p < rule.alpha / 100
        severity = "critical" if critical else "warning"
    return Verdict(True, fires, value, base, ratio, z, p, severity, "")


def window_start(ts: datetime, grain: str) -> datetime:
    """The UTC-aligned start of the hour or day holding ``ts``."""
    ts = ts.astimezone(UTC)
    if grain == "hour":
        return ts.replace(minute=0, second=0, microsecond=0)
    return ts.replace(hour=0, minute=0, second=0, microsecond=0)


def windows(since: datetime, until: datetime, grain: str) -> list[datetime]:
    """UTC window starts from the one holding ``since`` to the one holding ``until``."""
    step, t, out = GRAINS[grain], window_start(since, grain), []
    while t <= until:
        out.append(t)
        t += step
    return out


@dataclass(frozen=True)
class Decision:
    """The rule's verdict on one cohort, measure and window, with what it was judged on."""

    cohort_kind: str
    cohort: str
    measure: str
    window_start: datetime
    verdict: Verdict
    sessions: int  # the measure's sessions in the window (content / scored ones for shares)
    viewing_hours: float
    baseline_windows: int
    window: Sums
    baseline: Sums

    def detail(self) -> dict:
        """What the stored alert keeps of the test's numbers."""
        v, b = self.verdict, self.baseline
        return {
            "z": round(v.z, 3) if math.isfinite(v.z) else None,
            "observed": self.window.num,
            "expected": (v.baseline or 0.0) * self.window.den,
            "exposure": self.window.den,
            "baseline_exposure": b.den,
            "baseline_sessions": int(b.n),
        }


Cells = dict[tuple[datetime, str, str], dict[str, Sums]]
"""``{(window_start, model, fw): {measure: Sums}}``: the per-cell sums of ``alert_cells``."""

_HOURS = "freezes_per_hour"  # its x is the viewing hours, its n every session


def evaluate(
    cells: Cells, starts: list[datetime], grain: str, baseline_windows: int, rule: Rule
) -> list[Decision]:
    """Judge every firmware and model cohort on every measure in each window of ``starts``
    against its previous ``baseline_windows`` windows.

    Firmware first. A model cohort is then judged on its sessions less those of the firmwares
    that fired on the same measure and window (in the window and in its baseline alike): a
    model alert says the model is worse beyond the firmware already named, so one bad
    firmware raises one alert, not also one for its model. Sums are additive, so each
    cohort's sums per window are added up once and the baseline is a sum of those."""
    step = GRAINS[grain]
    fw_sums: dict = defaultdict(lambda: defaultdict(Sums))  # (w, fw) -> measure -> Sums
    model_sums: dict = defaultdict(lambda: defaultdict(Sums))  # (w, model) -> ...
    members: dict = defaultdict(list)  # w -> [(model, fw), ...]
    for (w, model, fw), sums in cells.items():
        members[w].append((model, fw))
        for measure, x in sums.items():
            fw_sums[(w, fw)][measure] += x
            model_sums[(w, model)][measure] += x
    out: list[Decision] = []
    for w in starts:
        back = [w - step * k for k in range(1, baseline_windows + 1)]
        here = members.get(w, [])
        fired: dict[str, set[str]] = {m: set() for m in MEASURES}
        for fw in sorted({fw for _, fw in here}):
            for measure in MEASURES:
                d = _judge_cohort(
                    "fw", fw, measure, w, back, rule, lambda t, m, fw=fw: fw_sums[(t, fw)][m]
                )
                out.append(d)
                if d.verdict.fires:
                    fired[measure].add(fw)
        for model in sorted({model for model, _ in here}):
            for measure in MEASURES:

                def less_fired(t, m, model=model, skip=fired[measure]):
                    total = model_sums[(t, model)][m]
                    for fw in skip:
                        total = total - cells.get((t, model, fw), {}).get(m, Sums())
                    return total

                out.append(_judge_cohort("model", model, measure, w, back, rule, less_fired))
    return out


def _judge_cohort(kind, name, measure, w, back, rule, sums_of) -> Decision:
    """One cohort on one measure in window ``w``; ``sums_of(window, measure)``: the cohort's
    sums in a window, ``back``: the baseline's windows."""
    win = sums_of(w, measure)
    base = sum((sums_of(t, measure) for t in back), Sums())
    hours = sums_of(w, _HOURS).den
    base_hours = sum(sums_of(t, _HOURS).den for t in back)
    used = sum(1 for t in back if sums_of(t, _HOURS).n > 0)
    v = judge(measure, win, hours, base, base_hours, used, rule)
    return Decision(kind, name, measure, w, v, int(win.n), hours, used, win, base)
