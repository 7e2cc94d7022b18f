"""Cohorts of boxes whose ordinary playback differs (logalyzer.core.synth.cohorts, issue 15).

On a generated fleet: each cohort's ordinary sessions have the rates and lengths it promises
against the boxes in no cohort, the truth names every box's cohorts, and with the option off
every fleet is byte-identical to the fleets before it existed.
"""

from __future__ import annotations

import json
import statistics

import pytest
from click.testing import CliRunner

from logalyzer.cli import main
from logalyzer.core.synth import FleetSpec, generate_fleet
from logalyzer.core.synth.cohorts import device_cohorts, parse_cohorts
from tests.test_synth_sequence import BEFORE, SMALL, digest


def test_off_keeps_every_fleet_byte_identical(tmp_path):
    assert digest(tmp_path / "a", FleetSpec(**SMALL, cohorts=None)) == BEFORE["default"]
    assert digest(tmp_path / "b", FleetSpec(**SMALL, cohorts="")) == BEFORE["default"]
    truth = json.loads((tmp_path / "a" / "ground_truth.json").read_text())
    assert "cohorts" not in truth["spec"]
    assert all("cohorts" not in d for d in truth["devices"])


def test_parse_cohorts():
    assert parse_cohorts("drops:0.25, noisy:0.1") == {"drops": 0.25, "noisy": 0.1}
    assert parse_cohorts("long") == {"long": 1.0}
    assert parse_cohorts(None) == {}
    for bad, says in (("loud:0.5", "unknown cohort"), ("drops:x", "not a number")):
        with pytest.raises(ValueError, match=says):
            parse_cohorts(bad)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        parse_cohorts("drops:1.5")


def test_cli_refuses_a_bad_cohort(tmp_path):
    r = CliRunner().invoke(main, ["synth", str(tmp_path / "f"), "--cohorts", "drops:2"])
    assert r.exit_code == 2
    assert "Invalid value for '--cohorts'" in r.output and "[0, 1]" in r.output
    assert not (tmp_path / "f").exists()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """16 boxes x 24 h; a quarter of the boxes in each of drops, noisy and long."""
    spec = FleetSpec(
        devices=16,
        hours=24,
        seed=21,
        anomaly_rate=0.05,
        noise_lines_per_minute=5,
        cohorts="drops:0.25,noisy:0.25,long:0.25",
    )
    res = generate_fleet(tmp_path_factory.mktemp("cohorts"), spec)
    return spec, json.loads(res.truth_path.read_text())


def _viewing(truth, only: set[str]) -> list[dict]:
    """Ordinary sessions of more than 20 s on boxes whose cohorts are exactly ``only``."""
    boxes = {d["rxid"] for d in truth["devices"] if set(d["cohorts"]) == only}
    assert boxes, f"no box in exactly {only}"
    return [
        s
        for s in truth["sessions"]
        if s["rxid"] in boxes and not s["anomalous"] and s["duration_s"] > 20
    ]


def _per_hour(sessions: list[dict], *counts: str) -> float:
    hours = sum(s["duration_s"] for s in sessions) / 3600
    return sum(s[c] for s in sessions for c in counts) / hours


def test_truth_names_every_box_cohorts(fleet):
    spec, truth = fleet
    assert truth["spec"]["cohorts"] == spec.cohorts
    for d in truth["devices"]:
        assert d["cohorts"] == sorted(device_cohorts(spec, d["index"]))
    members = [c for d in truth["devices"] for c in d["cohorts"]]
    assert {"drops", "noisy", "long"} <= set(members)


def test_each_cohort_differs_as_it_promises(fleet):
    _, truth = fleet
    none = _viewing(truth, set())
    drops = _per_hour(_viewing(truth, {"drops"}), "display_drop_count")
    assert 5 < drops / _per_hour(none, "display_drop_count") < 20
    busy = ("black_screen_count", "video_freeze_count", "buffering_count", "display_drop_count")
    noisy = _per_hour(_viewing(truth, {"noisy"}), *busy)
    assert 2.5 < noisy / _per_hour(none, *busy) < 6
    long = statistics.median(s["duration_s"] for s in _viewing(truth, {"long"}))
    assert 2 < long / statistics.median(s["duration_s"] for s in none) < 4.5


def test_short_sessions_fleet_wide(tmp_path):
    base = dict(devices=4, hours=12, seed=8, anomaly_rate=0.0, noise_lines_per_minute=5)
    medians = []
    for cohorts in (None, "short:1"):
        res = generate_fleet(tmp_path / str(cohorts), FleetSpec(**base, cohorts=cohorts))
        truth = json.loads(res.truth_path.read_text())
        viewing = [s["duration_s"] for s in truth["sessions"] if s["duration_s"] > 12]
        medians.append(statistics.median(viewing))
        if cohorts:
            assert all(d["cohorts"] == ["short"] for d in truth["devices"])
    assert 0.15 < medians[1] / medians[0] < 0.4, medians
