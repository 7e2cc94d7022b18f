"""The ``logalyzer`` command as a user meets it: help everywhere, exit codes, one-line errors."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import psycopg
import pytest
from click.testing import CliRunner

from logalyzer.cli import main

from .helpers import ROOT, query

BIN = Path(sys.executable).parent / "logalyzer"


def all_commands(group: click.Group = main, prefix: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        yield prefix + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, prefix + (name,))


COMMANDS = [path for path, _ in all_commands()]


@pytest.mark.parametrize("path", [()] + COMMANDS, ids=lambda p: " ".join(p) or "logalyzer")
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_every_command_has_help(path, flag):
    result = CliRunner().invoke(main, [*path, flag])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p))
def test_every_command_is_documented_in_the_readme(path):
    readme = (ROOT / "README.md").read_text()
    assert f"logalyzer {' '.join(path)}" in readme


def test_every_option_has_help_text():
    for path, cmd in all_commands():
        for p in cmd.params:
            if isinstance(p, click.Option):
                assert p.help, f"{' '.join(path)} {p.opts[0]} has no help"


def run_cli(*args, env=None, timeout=120):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )


def test_unreachable_database_is_one_line_naming_host_and_database_not_password(tmp_path):
    f = tmp_path / "R1234567890.log"
    f.write_text("03-17 16:13:38.811  1702  2395 I A: x\n")
    r = run_cli(
        "ingest", str(f), env={"LOGALYZER_DSN": "postgresql://alice:s3cret@127.0.0.1:1/fleetdb"}
    )
    assert r.returncode == 1
    err = r.stderr.strip().splitlines()
    assert err[0].startswith("Error: cannot reach database fleetdb on 127.0.0.1:1")
    assert err[1].startswith("Hint:") and len(err) == 2
    assert "s3cret" not in r.stderr + r.stdout
    assert "Traceback" not in r.stderr


def test_malformed_dsn_is_a_clear_error(tmp_path):
    r = run_cli("db", "info", env={"LOGALYZER_DSN": "not a url at all"})
    assert r.returncode == 1 and r.stderr.startswith("Error:") and "Traceback" not in r.stderr


def test_bad_time_zone_is_a_clear_error(tmp_path):
    r = run_cli(
        "ingest",
        str(tmp_path),
        "--tz",
        "Mars/Olympus",
        env={"LOGALYZER_DSN": "postgresql://x@127.0.0.1:1/y"},
    )
    assert r.returncode == 1 and "unknown time zone" in r.stderr and "Traceback" not in r.stderr


def test_unknown_steps_fail_before_anything_runs():
    r = run_cli("run", "x", "--steps", "ingest,bogus")
    assert r.returncode == 1 and "unknown step(s): bogus" in r.stderr


def test_rxids_are_validated():
    r = run_cli(
        "run",
        "x",
        "--rxids",
        "R1234567890,nope",
        env={"LOGALYZER_DSN": "postgresql://x@127.0.0.1:1/y"},
    )
    assert r.returncode == 1 and "not RxIDs: NOPE" in r.stderr


def test_usage_errors_exit_2():
    assert run_cli("ingest").returncode == 2
    assert run_cli("no-such-command").returncode == 2


@pytest.fixture()
def cli_env(db, monkeypatch):
    monkeypatch.setenv("LOGALYZER_DSN", db.dsn)
    return db


def test_ingest_prints_a_summary_and_exits_0_even_with_refused_files(cli_env, ray_local, tmp_path):
    good = tmp_path / "R1234567890" / "logcat_20240317.log.gz"
    good.parent.mkdir()
    good.write_bytes(
        gzip.compress(b"03-17 16:13:38.811  1702  2395 I A: x\n03-17 16:13:39.000  1  2 W B: y\n")
    )
    (tmp_path / "nobody.log").write_text("03-17 16:13:38.811  1702  2395 I A: x\n")
    result = CliRunner().invoke(main, ["ingest", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "status" in out and "loaded" in out
    assert any(line.split()[:2] == ["done", "1"] for line in out.splitlines())
    assert any(line.split()[:2] == ["refused", "1"] for line in out.splitlines())
    assert "refused:" in out and "nobody.log" in out and "--rxid" in out
    assert query(cli_env.dsn, "SELECT count(*) FROM R1234567890")[0][0] == 2
    # the same through the pipeline launcher, restricted to another device: nothing to do
    result = CliRunner().invoke(
        main, ["run", str(tmp_path), "--steps", "ingest", "--rxids", "R0000000000"]
    )
    assert result.exit_code == 0, result.output


def test_run_with_rxids_file_loads_only_those_devices(cli_env, ray_local, tmp_path):
    for rx in ("R1111111111", "R2222222222"):
        f = tmp_path / "fleet" / rx / "logcat.log.gz"
        f.parent.mkdir(parents=True)
        f.write_bytes(gzip.compress(f"03-17 16:13:38.811  1702  2395 I A: {rx}\n".encode()))
    ids = tmp_path / "ids.txt"
    ids.write_text("# the devices to redo\nR2222222222\n")
    result = CliRunner().invoke(
        main, ["run", str(tmp_path / "fleet"), "--steps", "ingest", "--rxids-file", str(ids)]
    )
    assert result.exit_code == 0, result.output
    assert query(cli_env.dsn, "SELECT DISTINCT rxid FROM log_lines") == [("R2222222222",)]


def test_db_migrate_is_idempotent_and_info_reports(cli_env):
    runner = CliRunner()
    first = runner.invoke(main, ["db", "migrate"])
    assert first.exit_code == 0 and "up to date" in first.output
    info = runner.invoke(main, ["db", "info"])
    from logalyzer.store.db import migrations

    files = migrations()
    assert info.exit_code == 0 and f"schema version: {files[-1][0]}" in info.output
    assert query(cli_env.dsn, "SELECT count(*) FROM schema_migrations")[0][0] == len(files)


def test_synth_writes_a_fleet(tmp_path):
    result = CliRunner().invoke(
        main, ["synth", str(tmp_path / "f"), "--devices", "2", "--hours", "0.5", "--seed", "1"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "f" / "ground_truth.json").exists()
    assert len(list((tmp_path / "f").glob("R*/*.log.gz"))) >= 2


def test_job_entry_points_have_help():
    for job in ("jobs/ingest.py", "jobs/pipeline.py", "jobs/alerts.py"):
        r = subprocess.run(
            [sys.executable, str(ROOT / job), "--help"], capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 0 and "Usage:" in r.stdout, r.stderr


def _gz(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))


def test_edge_devices_run_every_step_to_exit_0(cli_env, ray_local, tmp_path):
    """Beside ordinary boxes: one that logs no VAR event, one with only unparsed lines, and one
    with a single session. Every step runs, nothing stops on them."""
    from logalyzer.core.synth import FleetSpec, generate_fleet

    fleet = tmp_path / "fleet"
    generate_fleet(fleet, FleetSpec(devices=3, hours=4, seed=5, noise_lines_per_minute=2))
    _gz(
        fleet / "R0000000011" / "a.log.gz",
        [f"03-17 16:13:{i:02d}.000  1  1 I AM: x{i}" for i in range(50)],
    )
    _gz(fleet / "R0000000012" / "a.log.gz", [f"garbage line {i} \x01" for i in range(50)])
    _gz(
        fleet / "R0000000013" / "a.log.gz",
        [
            "03-17 16:13:00.000  1  1 I VAR: PLAYER|zap|ChangeContent|cid=1",
            "03-17 16:13:01.000  1  1 I VAR: PLAYER|play|FirstFrame|ttff_ms=300",
        ],
    )
    steps = "ingest,sessionize,train,detect"
    r = CliRunner().invoke(main, ["run", str(fleet), "--steps", steps, "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "analysed 6 device(s)" in r.output
    per_device = dict(query(cli_env.dsn, "SELECT rxid, count(*) FROM sessions GROUP BY 1"))
    assert "R0000000011" not in per_device and "R0000000012" not in per_device
    assert per_device["R0000000013"] == 1
    scored = query(cli_env.dsn, "SELECT count(DISTINCT (rxid, session_id)) FROM anomalies")
    assert scored == [(sum(per_device.values()),)]


def test_too_few_sessions_to_train_is_one_line_after_the_summaries(cli_env, ray_local, tmp_path):
    _gz(
        tmp_path / "R0000000013" / "a.log.gz",
        [
            "03-17 16:13:00.000  1  1 I VAR: PLAYER|zap|ChangeContent|cid=1",
            "03-17 16:13:01.000  1  1 I VAR: PLAYER|play|FirstFrame|ttff_ms=300",
        ],
    )
    r = run_cli(
        "run",
        str(tmp_path),
        "--steps",
        "ingest,sessionize,train,detect",
        "--no-progress",
        env={"LOGALYZER_DSN": cli_env.dsn},
        timeout=300,
    )
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert "analysed 1 device(s)" in r.stdout  # the steps that ran say what they did
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: 1 sessions to learn from; training needs at least 20"]
    # what Ray's workers print stays in Ray's log files, named once, before the error
    assert "pid=" not in r.stderr and r.stderr.count("(Ray's own messages: ") == 1
    assert re.search(r"\(Ray's own messages: /\S+/logs\)\nError:", r.stderr), r.stderr
    # an empty database: the same, and sessionize says it found nothing
    with psycopg.connect(cli_env.dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE log_lines, ingested_files, sessions, devices CASCADE")
    r = CliRunner().invoke(main, ["run", "--steps", "sessionize,train,detect", "--no-progress"])
    assert r.exit_code == 1 and "analysed 0 device(s)" in r.output
    assert "0 sessions to learn from" in r.output


def test_a_failed_file_exits_3_after_the_summary(cli_env, ray_local, tmp_path):
    _gz(tmp_path / "R0000000021" / "good.log.gz", ["03-17 16:13:00.000  1  1 I A: x"])
    (tmp_path / "R0000000021" / "junk.log.gz").write_bytes(bytes(range(256)) * 64)
    r = CliRunner().invoke(main, ["ingest", str(tmp_path), "--no-progress"])
    assert r.exit_code == 3, r.output
    assert "failed:" in r.output and "binary" in r.output  # the file and its reason are listed
    assert "Error: 1 of 2 file(s) failed" in r.output
    assert query(cli_env.dsn, "SELECT count(*) FROM log_lines") == [(1,)]
