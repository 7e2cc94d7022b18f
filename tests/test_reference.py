"""The reference history (issue 15, item 4): the known-clean part of the fleet the LSTM learns
from. The reference itself (pure), the generator's clean window, the verdict with a
referenced LSTM, and end to end: ``eval synthetic --reference-clean-hours`` through the real
pipeline, the reference stored with the model, and ``train``'s errors for a reference that
cannot be used."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from logalyzer.cli import main
from logalyzer.core import lstm
from logalyzer.core.detectors import LSTMDetector, Verdict, from_bytes, to_bytes
from logalyzer.core.reference import BadReference, Reference
from logalyzer.core.synth import SEQUENCE_FAULT_KINDS, FleetSpec, generate_fleet
from logalyzer.core.verdict import consolidate, verdict_kinds
from logalyzer.jobs.detect import detect
from logalyzer.store.db import Database
from logalyzer.store.registry import load, register

from .helpers import query

T = datetime(2024, 3, 17, 8, 0, tzinfo=UTC)
A, B = "R0000000001", "R0000000002"


def row(rxid: str, hours: float) -> dict:
    return {"rxid": rxid, "start_ts": T + timedelta(hours=hours)}


# --------------------------------------------------------------------------- the reference


def test_a_reference_holds_the_sessions_of_its_window_and_boxes():
    ref = Reference(since=T, until=T + timedelta(hours=8), rxids=frozenset({A}))
    assert ref.holds(row(A, 0)) and ref.holds(row(A, 7.99))
    assert not ref.holds(row(A, 8)) and not ref.holds(row(A, -0.01))  # [since, until)
    assert not ref.holds(row(B, 1))
    # a naive time is UTC, as the stored ones are
    assert ref.holds({"rxid": A, "start_ts": datetime(2024, 3, 17, 9, 0)})
    assert Reference(until=T).holds(row(B, -100)) and not Reference(until=T).holds(row(B, 0))
    assert (
        ref.describe() == "sessions from 2024-03-17T08:00:00Z before 2024-03-17T16:00:00Z on 1 box"
    )
    assert Reference.from_json(ref.to_json()) == ref
    assert Reference.from_json(None) is None
    json.dumps(ref.to_json())  # plain types: the checkpoint loads weights_only


def test_a_reference_from_the_command_line_and_its_errors():
    assert Reference.parse(None, None, None) is None  # no option: no reference
    ref = Reference.parse("2024-03-17T09:00+01:00", "2024-03-18", {A})
    assert ref.since == T and ref.until == datetime(2024, 3, 18, tzinfo=UTC)
    with pytest.raises(BadReference, match="--reference-until: not a time: 'soon'"):
        Reference.parse(None, "soon", None)
    with pytest.raises(BadReference, match="window is empty"):
        Reference.parse("2024-03-18", "2024-03-17", None)
    few = [row(A, h) for h in range(30)]
    assert len(Reference(until=T + timedelta(hours=25)).select(few, 20)) == 25
    with pytest.raises(BadReference, match="holds 5 sessions; the LSTM needs at least 20"):
        Reference(until=T + timedelta(hours=5)).select(few, 20)


def test_the_reference_travels_in_the_lstm_checkpoint_and_puts_it_in_the_verdict():
    seqs = [["ChangeContent", "FirstFrame"]] * 3
    det = LSTMDetector.new(lstm.LSTMConfig(), seqs)
    assert from_bytes(to_bytes(det)).reference is None
    assert verdict_kinds({"lstm": det, "ae": object()}) == ("ae",)
    det.reference = Reference(until=T).to_json()
    back = from_bytes(to_bytes(det))
    assert back.reference == {"since": None, "until": "2024-03-17T08:00:00Z", "rxids": None}
    assert verdict_kinds({"lstm": back, "ae": object()}) == ("ae", "lstm")
    flags = {"lstm": Verdict(3.2, 0.6, True), "ae": Verdict(0.1, 0.3, False)}
    assert consolidate(flags)[:2] == (False, ["lstm"])  # a second opinion without a reference
    assert consolidate(flags, verdict_kinds({"lstm": back}))[:2] == (True, ["lstm"])


# --------------------------------------------------------------------------- the generator


def test_the_generator_keeps_its_clean_hours_free_of_every_anomaly(tmp_path):
    spec = FleetSpec(
        devices=6,
        hours=6,
        seed=7,
        anomaly_rate=0.3,
        sequence_faults=0.5,
        noise_lines_per_minute=2,
        reference_clean_hours=3,
    )
    truth = json.loads(generate_fleet(tmp_path, spec).truth_path.read_text())
    until = spec.reference_until()
    assert until == datetime(2024, 3, 17, 11, 0, tzinfo=UTC)
    assert truth["spec"]["reference_clean_hours"] == 3
    start = lambda s: datetime.fromisoformat(s["start_ts"].replace("Z", "+00:00"))  # noqa: E731
    before = [s for s in truth["sessions"] if start(s) < until]
    after = [s for s in truth["sessions"] if start(s) >= until]
    assert len(before) > 50 and not any(s["anomaly_kind"] for s in before)
    kinds = {s["anomaly_kind"] for s in after} - {None}
    assert len(kinds) > 4 and kinds & set(SEQUENCE_FAULT_KINDS)  # the faults come after
    assert FleetSpec(reference_clean_hours=0).reference_until() is None


# --------------------------------------------------------------------------- end to end


MIN_P = 0.05


@pytest.fixture(scope="module")
def evaluated(pg_dsn, settings, ray_local, tmp_path_factory):
    """``eval synthetic`` with a clean reference, on a small fleet, through the CLI (once):
    the LSTM's steps cut to a few (min_steps 0, 3 epochs), so the run stays short, and its
    ``min_p`` set apart from the reference's, to see that the stored config is the reference's."""
    from tests.conftest import empty_database

    empty_database(pg_dsn)
    env = {"LOGALYZER_DSN": pg_dsn, "LOGALYZER_HOME": str(settings.home)}
    args = ["eval", "synthetic", "--devices", "6", "--hours", "4", "--seed", "5", "--epochs", "3"]
    args += ["--anomaly-rate", "0.3", "--sequence-faults", "0.5"]  # 4 sequence-only sessions
    args += ["--reference-clean-hours", "2", "--workers", "1"]
    args += ["--out", str(tmp_path_factory.mktemp("reffleet"))]
    mp = pytest.MonkeyPatch()
    mp.setitem(lstm.REFERENCE_CONFIG, "min_steps", 0)
    mp.setitem(lstm.REFERENCE_CONFIG, "min_p", MIN_P)
    try:
        r = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    finally:
        mp.undo()
    return pg_dsn, env, r


def test_eval_with_a_clean_reference_trains_the_lstm_on_it_and_says_so(evaluated):
    dsn, _, r = evaluated
    assert r.exit_code == 0, r.output
    assert "the LSTM learnt from the clean reference: sessions before 2024-03-17T10:00:00Z" in (
        r.output
    )
    assert "all kinds, sequence-only (P / R / F1): lstm " in r.output
    assert "after the reference, all (P / R / F1): lstm " in r.output
    # the reference is stored with the LSTM (models row and checkpoint), not with the others
    rows = dict(query(dsn, "SELECT detector, trained_on FROM models"))
    ref = rows["lstm"]["reference"]
    assert ref["until"] == "2024-03-17T10:00:00Z" and ref["since"] is None
    n_ref = query(dsn, "SELECT count(*) FROM sessions WHERE start_ts < '2024-03-17T10:00:00Z'")
    # every session of the reference (the operator vouches for them), none after it
    assert ref["sessions"] == n_ref[0][0] == rows["lstm"]["learnt_from"] >= 20
    assert "reference" not in rows["ae"] and "reference" not in rows["baseline"]
    blob = query(dsn, "SELECT checkpoint, config FROM models WHERE detector = 'lstm'")[0]
    det = from_bytes(bytes(blob[0]))
    assert det.reference["until"] == "2024-03-17T10:00:00Z"
    assert det.cfg.top_g == 0 and det.cfg.min_p == MIN_P  # the reference's config
    assert blob[1]["top_g"] == 0
    # ... so its flag makes a session anomalous (test_detect_counts_... below for certain)
    cons = query(dsn, "SELECT is_anomaly, detectors FROM anomalies_consolidated")
    assert cons and all(a == bool({"lstm", "ae"} & set(d)) for a, d in cons)


def test_models_names_the_reference(evaluated):
    _, env, _ = evaluated
    r = CliRunner().invoke(main, ["models"], env=env, catch_exceptions=False)
    lines = r.output.splitlines()
    lstm_line = [line for line in lines if line.startswith("lstm v1")][0]
    assert "of the reference (sessions before 2024-03-17T10:00:00Z)" in lstm_line
    assert not any("reference" in line for line in lines if line.startswith("ae v1"))


@pytest.mark.parametrize(
    "args, said",
    [
        (["--reference-until", "2024-03-17T08:00"], "holds 0 sessions; the LSTM needs at least"),
        (["--reference-boxes", "R0000000009"], "holds 0 sessions"),
        (["--reference-until", "2024-03-17T10:00", "--detectors", "ae"], "only for the LSTM"),
        (["--reference-since", "2024-03-18", "--reference-until", "2024-03-17"], "is empty"),
        (["--reference-until", "yesterday"], "not a time: 'yesterday'"),
        (["--reference-boxes", "@/no/such/file"], "no such file"),
    ],
)
def test_a_reference_that_cannot_be_used_is_a_clear_error_before_training(evaluated, args, said):
    dsn, env, _ = evaluated
    before = query(dsn, "SELECT count(*) FROM models")[0][0]
    r = CliRunner().invoke(main, ["train", *args], env=env)
    assert r.exit_code == 1 and said in r.output, r.output
    assert query(dsn, "SELECT count(*) FROM models")[0][0] == before  # nothing trained


def test_train_help_names_the_reference_options():
    r = CliRunner().invoke(main, ["train", "--help"])
    assert r.exit_code == 0
    for opt in ("--reference-since", "--reference-until", "--reference-boxes"):
        assert opt in r.output


def test_detect_counts_a_referenced_lstms_flag_and_not_an_unreferenced_ones(
    evaluated, settings, ray_local
):
    """The stored LSTM again with a threshold of 0 (it flags every session): with its
    reference every session is anomalous; the same model without one is a second opinion."""
    dsn, _, _ = evaluated
    db = Database(dsn)
    n = query(dsn, "SELECT count(*) FROM sessions")[0][0]
    det = load(db, "lstm")
    assert det.reference is not None
    det.threshold = 0.0
    register(db, det, {}, {"reference": det.reference})
    detect(settings, db, rescore=True, progress=False)
    cons = query(dsn, "SELECT is_anomaly, detectors FROM anomalies_consolidated")
    assert len(cons) == n and all(a and "lstm" in d for a, d in cons)

    det.reference = None
    register(db, det, {}, {})
    detect(settings, db, rescore=True, progress=False)
    cons = query(dsn, "SELECT is_anomaly, detectors FROM anomalies_consolidated")
    assert len(cons) == n and all(a == ("ae" in d) for a, d in cons)
    assert sum(a for a, _ in cons) < n / 2  # the autoencoder's few
