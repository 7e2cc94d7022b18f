"""The anomaly-detection commands: ``logalyzer train``, ``detect``, ``eval`` and ``models``.

Registered on the ``logalyzer`` group by :mod:`logalyzer.cli`, with the same error handling
(:mod:`logalyzer.cli.common`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from logalyzer.cli.common import (
    CONTEXT,
    fleet_fault_options,
    friendly,
    load_settings,
    open_db,
    parse_rxids,
    progress_option,
    rxids_option,
    workers_option,
)
from logalyzer.core.features import ALL_KINDS, BASELINE, KINDS
from logalyzer.core.reference import TIME_FORMS, Reference
from logalyzer.errors import LogalyzerError
from logalyzer.store.reports import model_listing
from logalyzer.store.scores import top_anomalies


def parse_detectors(text: str | None) -> tuple[str, ...] | None:
    """'lstm, ae' → ('lstm', 'ae'); None stays None (the command's default set)."""
    if text is None:
        return None
    asked = tuple(dict.fromkeys(s.strip().lower() for s in text.split(",") if s.strip()))
    bad = [d for d in asked if d not in ALL_KINDS]
    if bad or not asked:
        raise LogalyzerError(
            f"unknown detector(s): {', '.join(bad) or '(none given)'}",
            hint=f"detectors are: {', '.join(ALL_KINDS)}",
        )
    return asked


def detectors_option(verb: str, default: str | None = ",".join(ALL_KINDS), shown=True):
    return click.option(
        "--detectors",
        default=default,
        show_default=shown,
        help=f"Which detectors to {verb} (comma-separated: {', '.join(ALL_KINDS)}).",
    )


def version_options(fn):
    """``--lstm-version``, ``--ae-version``, ...: one option per detector kind."""
    for kind in reversed(ALL_KINDS):
        fn = click.option(
            f"--{kind}-version",
            f"{kind}_version",
            type=click.IntRange(1),
            default=None,
            help=f"Pin a version of the {kind} detector (default: newest).",
        )(fn)
    return fn


# --------------------------------------------------------------------------- train


@click.command(context_settings=CONTEXT)
@detectors_option("train")
@workers_option
@click.option("--gpu", is_flag=True, help="Give each worker a GPU (the cluster must have them).")
@click.option(
    "--epochs",
    default=None,
    type=click.IntRange(1, 10_000),
    help="Epochs (default: each detector's config).",
)
@rxids_option("Learn only from these devices (comma-separated RxIDs).")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed for the weights.")
@click.option(
    "--reference-since",
    metavar="TS",
    default=None,
    help=f"The LSTM learns only from a known-clean reference: sessions starting at or after TS "
    f"({TIME_FORMS}).",
)
@click.option(
    "--reference-until",
    metavar="TS",
    default=None,
    help="... and before TS (the same forms). With a reference the LSTM finds events in a wrong "
    "order and takes part in the combined verdict.",
)
@click.option(
    "--reference-boxes",
    metavar="RXIDS",
    default=None,
    help="... and on these boxes only (comma-separated RxIDs, or @FILE: one per line).",
)
@progress_option
@friendly
def train(
    detectors: str,
    workers: int,
    gpu: bool,
    epochs: int | None,
    rxids: str | None,
    seed: int,
    reference_since: str | None,
    reference_until: str | None,
    reference_boxes: str | None,
    progress: bool | None,
) -> None:
    """Train the detectors on the fleet's sessions with Ray Train and register new versions.

    With --reference-since/--reference-until/--reference-boxes the LSTM learns the order of
    events only from that known-clean part of the history (the others from all of it).
    """
    from logalyzer.jobs.train import train as run_train  # heavy (Ray Train, torch): when it runs

    reference = Reference.parse(reference_since, reference_until, parse_boxes(reference_boxes))
    settings = load_settings()
    db = open_db(settings)
    results = run_train(
        settings,
        db,
        parse_detectors(detectors),
        workers=workers,
        use_gpu=gpu,
        rxids=parse_rxids(rxids),
        epochs=epochs,
        seed=seed,
        progress=progress,
        reference=reference,
    )
    print_train_results(results)


def parse_boxes(text: str | None) -> set[str] | None:
    """``R1,R2`` or ``@FILE`` (one RxID per line, ``#`` comments) → the RxIDs; None: all."""
    if text and text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise LogalyzerError(f"no such file: {path}", hint="--reference-boxes @FILE")
        return parse_rxids(rxids_file=path)
    return parse_rxids(text)


def print_train_results(results) -> None:
    for r in results:
        how = (
            f"{r.epochs} epochs on {r.workers} worker(s) in {r.seconds:,.1f} s "
            f"({r.sessions_per_s:,.0f} sessions/s per epoch), learnt from {r.sessions:,} "
            f"sessions; loss {r.losses[0]:.4f} -> {r.losses[-1]:.4f}"
            if r.losses
            else f"fitted on {r.sessions:,} sessions in {r.seconds:,.1f} s"
        )
        click.echo(
            f"{r.detector}: version {r.version}, {how}; "
            f"threshold {r.threshold:.4g} flags {r.flagged_share:.1%} of the history"
        )


# --------------------------------------------------------------------------- detect


@click.command(context_settings=CONTEXT)
@detectors_option("score with", None, f"{','.join(KINDS)}, and {BASELINE} when trained")
@version_options
@click.option(
    "--rescore", is_flag=True, help="Score every session again, not only new or changed ones."
)
@rxids_option()
@click.option(
    "--top",
    default=5,
    show_default=True,
    type=click.IntRange(0, 1000),
    help="How many of the most anomalous sessions to print.",
)
@progress_option
@friendly
def detect(
    detectors: str | None,
    rescore: bool,
    rxids: str | None,
    top: int,
    progress: bool | None,
    **versions: int | None,
) -> None:
    """Score sessions with the trained detectors (Ray Data actor pool) into the anomalies tables."""
    from logalyzer.jobs.detect import detect as run_detect  # heavy (Ray, torch): when it runs

    settings = load_settings()
    db = open_db(settings)
    pinned = {k: versions[f"{k}_version"] for k in ALL_KINDS if versions[f"{k}_version"]}
    summary = run_detect(
        settings,
        db,
        parse_detectors(detectors),
        versions=pinned,
        rescore=rescore,
        rxids=parse_rxids(rxids),
        progress=progress,
    )
    print_detect_summary(summary)
    print_top_anomalies(db, top)


def print_detect_summary(s) -> None:
    versions = ", ".join(f"{k} v{v}" for k, v in s.versions.items())
    flagged = ", ".join(f"{k} {n:,}" for k, n in s.flagged.items())
    click.echo(
        f"scored {s.scored:,} sessions ({s.skipped:,} already scored) with {versions} in "
        f"{s.seconds:,.1f} s; flagged: {flagged}; anomalous (combined): {s.anomalous:,}"
    )


def describe_reasons(reasons: dict, limit: int = 2) -> str:
    """'15 freezes (usually 0.1); unexpected HdcpStatus:ok=false after FirstFrame;
    ActivityManager: ANR in <*> 12 times (usually 0)' (the last: system templates). Scores
    stored before the features had a text read in the model's numbers."""
    parts = [
        f.get("text") or f"{f['feature']} {f['value']:g} (expected {f['expected']:.2g})"
        for f in (reasons.get("features") or [])[:limit]
    ]
    seen = dict.fromkeys(
        f"unexpected {t['event']} after {t['after']}" for t in reasons.get("transitions") or []
    )
    system = [t["text"] for t in (reasons.get("templates") or [])[:limit] if t.get("text")]
    return "; ".join(parts + list(seen)[:limit] + system)


def print_top_anomalies(db, limit: int) -> None:
    if limit <= 0:
        return
    rows = top_anomalies(db, limit)
    if rows:
        click.echo(f"top {len(rows)} anomalous sessions (score = multiple of the threshold):")
    for r in rows:
        scores = ", ".join(
            f"{k} {r[f'{k}_score']:.1f}x" for k in KINDS if r[f"{k}_score"] is not None
        )
        click.echo(
            f"  {r['rxid']} {r['start_ts']:%Y-%m-%d %H:%M:%S} {r['content_id'] or '-'} "
            f"({r['duration_s']:,.0f} s) [{scores}]: {describe_reasons(r['reasons'])}"
        )


# --------------------------------------------------------------------------- eval


@click.group(name="eval", context_settings=CONTEXT)
def evaluate() -> None:
    """Measure the detectors (a synthetic fleet with ground truth, HDFS-100k) and the alerts."""


@evaluate.command(context_settings=CONTEXT)
@click.option(
    "--devices",
    default=40,
    show_default=True,
    type=click.IntRange(2, 10_000),
    help="Boxes in the fleet.",
)
@click.option(
    "--hours",
    default=24.0,
    show_default=True,
    type=click.FloatRange(1, 24 * 365),
    help="Hours per box.",
)
@click.option(
    "--seed",
    default=29,
    show_default=True,
    type=int,
    help="Fleet seed (use one the models were not tuned on).",
)
@click.option(
    "--out",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the fleet (default: LOGALYZER_HOME/eval-fleet-SEED).",
)
@click.option(
    "--anomaly-rate",
    default=0.1,
    show_default=True,
    type=click.FloatRange(0.0, 0.5),
    help="Share of the sessions made anomalous.",
)
@fleet_fault_options(
    "the LSTM is trained on them (train --reference-until), as an operator naming a "
    "known-clean period; 0: no reference."
)
@workers_option
@click.option(
    "--repeats",
    default=1,
    show_default=True,
    type=click.IntRange(1, 100),
    help="Train and detect this many times (seeds --train-seed, +1, ...): mean and std of each.",
)
@click.option(
    "--train-seed", default=0, show_default=True, type=int, help="Seed of the first training."
)
@click.option(
    "--epochs",
    default=None,
    type=click.IntRange(1, 10_000),
    help="Epochs (default: each detector's config).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
@friendly
def synthetic(
    devices: int,
    hours: float,
    seed: int,
    out: Path | None,
    anomaly_rate: float,
    system_faults: float,
    sequence_faults: float,
    reference_clean_hours: float,
    cohorts: str | None,
    workers: int,
    repeats: int,
    train_seed: int,
    epochs: int | None,
    as_json: bool,
) -> None:
    """Generate a fleet, run ingest → sessionize → train → detect on it, compare with its truth.

    Use an empty database (LOGALYZER_DSN): the comparison covers every stored session.
    """
    from logalyzer.jobs.evaluate import run_synthetic  # heavy (Ray, torch): when it runs

    settings = load_settings()
    db = open_db(settings)
    folder = out or settings.home / f"eval-fleet-{seed}"
    res = run_synthetic(
        settings,
        db,
        folder,
        devices,
        hours,
        seed,
        workers,
        progress=sys.stderr.isatty(),
        repeats=repeats,
        train_seed=train_seed,
        anomaly_rate=anomaly_rate,
        epochs=epochs,
        system_faults=system_faults,
        sequence_faults=sequence_faults,
        reference_clean_hours=reference_clean_hours,
        cohorts=cohorts,
    )
    if as_json:
        click.echo(json.dumps(res, indent=2, default=str))
        return
    click.echo(f"{res['sessions']:,} sessions, {res['anomalous']:,} anomalous (seed {seed})")
    if res["spec"]["reference"]:
        ref = res["spec"]["reference"]
        click.echo(f"the LSTM learnt from the clean reference: sessions before {ref['until']}")
    if repeats > 1:
        for r in res["runs"]:
            f1 = ", ".join(f"{n} {r[n]['f1']:.3f}" for n in (*ALL_KINDS, "combined"))
            click.echo(f"  training seed {r['train_seed']}: F1 {f1}")
        click.echo(f"mean ± std over {repeats} trainings:")
        _print_spread_table(res["spread"])
        click.echo(f"the last training (seed {res['train_seed']}):")
    _print_prf_table(res)
    _print_rules(res)


_NAMES = (*ALL_KINDS, "combined")


def _print_prf_table(res: dict) -> None:
    names = _NAMES
    head = f"{'':22}" + "".join(f"{n:>22}" for n in names)
    click.echo(click.style(head + "   (precision / recall / F1)", bold=True))
    rows = [("all kinds", res["overall"])] + [
        (f"{k} ({v['sessions']})", v) for k, v in res["per_kind"].items()
    ]
    rows += [(f"cohort {k} ({v['sessions']})", v) for k, v in res.get("per_cohort", {}).items()]
    for name, v in rows:
        cells = "".join(
            f"{v[n]['precision']:>8.3f}{v[n]['recall']:>7.3f}{v[n]['f1']:>7.3f}" for n in names
        )
        click.echo(f"{name:22}{cells}")


def _print_rules(res: dict) -> None:
    """The verdict with and without the LSTM (overall, sequence-only kinds, and after the
    reference window when there is one): what deciding its place rests on."""
    parts = [("all kinds", res)]
    if "outside_reference" in res:
        parts.append(("after the reference", res["outside_reference"]))
    for label, part in parts:
        for block, name in (("overall", "all"), ("sequence_only", "sequence-only")):
            if block not in part:
                continue
            v = part[block]
            cells = ", ".join(
                f"{rule} {v[rule]['precision']:.3f} / {v[rule]['recall']:.3f} / {v[rule]['f1']:.3f}"
                for rule in ("lstm", "ae", "ae_or_lstm")
            )
            click.echo(f"{label}, {name} (P / R / F1): {cells}")


def _print_spread_table(spread: dict) -> None:
    """F1 mean ± std of each detector, overall and per kind, and P/R means overall."""
    head = f"{'':22}" + "".join(f"{n:>18}" for n in _NAMES)
    click.echo(click.style(head + "   (F1 mean ± std)", bold=True))
    for name, v in spread.items():
        label = "all kinds" if name == "overall" else name
        cells = "".join(f"{v[n]['f1'][0]:>11.3f} ±{v[n]['f1'][1]:.3f}" for n in _NAMES)
        click.echo(f"{label:22}{cells}")
    o = spread["overall"]
    pr = ", ".join(
        f"{n} P {o[n]['precision'][0]:.3f}±{o[n]['precision'][1]:.3f} "
        f"R {o[n]['recall'][0]:.3f}±{o[n]['recall'][1]:.3f}"
        for n in _NAMES
    )
    click.echo(f"all kinds: {pr}")


@evaluate.command(context_settings=CONTEXT)
@click.option(
    "--data",
    default=None,
    show_default="tests/data/hdfs-100k of the checkout",
    type=click.Path(file_okay=False, path_type=Path),
    help="The hdfs-100k folder.",
)
@workers_option
@click.option(
    "--epochs", default=20, show_default=True, type=click.IntRange(1, 1000), help="LSTM epochs."
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    help="Seed of the validation split and weights.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
@friendly
def hdfs(data: Path | None, workers: int, epochs: int, seed: int, as_json: bool) -> None:
    """The LSTM on the public HDFS-100k benchmark, by its README's protocol."""
    from logalyzer.jobs.evaluate import run_hdfs  # heavy (Ray Train, torch): when it runs

    res = run_hdfs(load_settings(), data, workers=workers, seed=seed, epochs=epochs)
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    t, c = res["test"], res["chosen"]
    click.echo(
        f"trained on {res['train_normal_sessions']:,} normal sessions; chose top_g={c['top_g']}, "
        f"min_p={c['min_p']:g}, threshold {c['threshold']} "
        f"on {res['validation_sessions']:,} validation sessions "
        f"(F1 {c['validation_f1']})"
    )
    click.echo(
        f"test ({res['test_sessions']:,} sessions, {res['test_anomalies']} anomalies): "
        f"precision {t['precision']:.3f}, recall {t['recall']:.3f}, F1 {t['f1']:.3f}"
    )


@evaluate.command(name="alerts", context_settings=CONTEXT)
@click.option(
    "--seeds", default=3, show_default=True, type=click.IntRange(1, 100), help="Fleets per variant."
)
@click.option("--first-seed", default=0, show_default=True, type=int, help="The first seed.")
@click.option(
    "--devices",
    default=32,
    show_default=True,
    type=click.IntRange(4, 10_000),
    help="Boxes per fleet.",
)
@click.option(
    "--days",
    default=5,
    show_default=True,
    type=click.IntRange(5, 60),
    help="Days per fleet (the regression hits the last full one).",
)
@click.option(
    "--factor",
    default=4.0,
    show_default=True,
    type=click.FloatRange(1.0, 100.0),
    help="How many times the usual freeze rate the regressed firmware has that day.",
)
@click.option(
    "--anomaly-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0.0, 0.5),
    help="Share of the sessions made anomalous (freeze storms among them).",
)
@click.option(
    "--out",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the fleets (default: LOGALYZER_HOME/eval-alerts).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
@friendly
def eval_alerts(
    seeds: int,
    first_seed: int,
    devices: int,
    days: int,
    factor: float,
    anomaly_rate: float,
    out: Path | None,
    as_json: bool,
) -> None:
    """Fleets where one firmware regresses on one day, and controls: precision / recall of alerts.

    Each fleet gets a scratch database on the server of LOGALYZER_DSN, dropped afterwards.
    """
    from logalyzer.jobs.evaluate_alerts import run_alerts_eval  # Ray (ingest): when it runs

    settings = load_settings()
    db = open_db(settings)
    res = run_alerts_eval(
        settings,
        db,
        out or settings.home / "eval-alerts",
        seeds=seeds,
        first_seed=first_seed,
        devices=devices,
        days=days,
        anomaly_rate=anomaly_rate,
        factor=factor,
        progress=sys.stderr.isatty(),
    )
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    for r in res["runs"]:
        click.echo(
            f"seed {r['seed']}: {r['firmware']} ({r['boxes']} boxes) x{factor:g} freezes on "
            f"{r['day']}: precision {r['precision']:.3f}, recall {r['recall']:.3f} "
            f"(tp {r['tp']}, fp {r['fp']}, fn {r['fn']})"
            + (f"; false alerts: {', '.join(r['false_alerts'])}" if r["false_alerts"] else "")
        )
    p = res["pooled"]
    click.echo(
        f"mean over {seeds} seeds: precision {res['mean_precision']:.3f}, recall "
        f"{res['mean_recall']:.3f}; pooled: tp {p['tp']}, fp {p['fp']}, fn {p['fn']} "
        f"({res['seconds']:,.0f} s)"
    )


# --------------------------------------------------------------------------- models


@click.command(context_settings=CONTEXT)
@friendly
def models() -> None:
    """List the trained detector versions in the registry."""
    db = open_db(load_settings())
    rows = model_listing(db)
    if not rows:
        click.echo("no trained models (run: logalyzer train)")
    for r in rows:
        m = r["metrics"]
        click.echo(
            f"{r['detector']} v{r['version']}  {r['created_at']:%Y-%m-%d %H:%M}  threshold "
            f"{r['threshold']:.4g}  "
            f"learnt from {r['trained_on'].get('learnt_from', '?')} sessions"
            f"{_of_reference(r['trained_on'].get('reference'))}  "
            f"flags {m.get('flagged_share', 0):.1%} of its history"
        )


def _of_reference(ref: dict | None) -> str:
    """' of the reference (sessions before 2024-03-17T16:00:00Z)', or '' without one."""
    return f" of the reference ({Reference.from_json(ref).describe()})" if ref else ""


COMMANDS = (train, detect, evaluate, models)
