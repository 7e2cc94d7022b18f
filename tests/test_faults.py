"""Faults mid-ingest, each followed by a re-run, compared with a clean load (issue 11).

Every scenario runs the real CLI (``logalyzer ingest``, its own local Ray) against a throwaway
PostgreSQL cluster that the module starts on a free socket (pgserver), so it can be restarted
and stopped without disturbing the other tests. A scenario waits until rows are being stored,
strikes, re-runs the same command, and then the set of stored (rxid, line_md5) must equal a
clean load's: nothing lost, nothing twice.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import psycopg
import pytest
from psycopg import sql

from logalyzer.core.synth import FleetSpec, generate_fleet

BIN = Path(sys.executable).parent / "logalyzer"


@pytest.fixture(scope="module")
def cluster():
    """A PostgreSQL server of our own (pgserver), to restart and stop at will. Its folder is
    outside pytest's private temporary folder: as root, pgserver runs the server as another
    user, who must be able to reach it."""
    import pgserver

    root = Path(tempfile.mkdtemp(prefix="logalyzer-faultpg-"))
    root.chmod(0o755)
    server = pgserver.get_server(root / "data", cleanup_mode="delete")
    yield server
    if not _running(server):
        _pg_ctl(server, "start")
    server.cleanup()
    shutil.rmtree(root, ignore_errors=True)


def _pg_ctl(server, action: str) -> None:
    """``pg_ctl`` restart / stop / start; a start takes the options of the first start (the
    socket pgserver chose), which ``postmaster.opts`` holds while the server runs."""
    from pgserver import _commands

    opts_file = Path(server.pgdata) / "postmaster.opts"
    if opts_file.exists():
        words = shlex.split(opts_file.read_text())[1:]  # drop the postgres binary
        i = words.index("-D") if "-D" in words else -1
        server.logalyzer_opts = shlex.join(words[:i] + words[i + 2 :] if i >= 0 else words)
    if action == "start":
        args = ["-w", "-o", server.logalyzer_opts, "-l", str(Path(server.pgdata) / "log"), "start"]
    else:
        args = ["-w", "-m", "fast", action]
    _commands.pg_ctl(args, pgdata=server.pgdata, user=server.system_user)


def _running(server) -> bool:
    try:
        psycopg.connect(server.get_uri(), connect_timeout=2).close()
        return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Path:
    """About 200k lines over 4 boxes, 24 files: long enough to strike mid-load."""
    out = tmp_path_factory.mktemp("faultfleet")
    generate_fleet(out, FleetSpec(devices=4, hours=6, seed=11, noise_lines_per_minute=120))
    return out


def _new_db(server) -> str:
    name = f"fault_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server.get_uri(name)


def _cli(dsn: str, *args: str) -> subprocess.Popen:
    """``logalyzer ARGS --no-progress`` on ``dsn``, with its own local Ray (two loaders), in a
    session of its own so that a fault can be sent to it and its children at once."""
    env = {**os.environ, "LOGALYZER_DSN": dsn, "LOGALYZER_INGEST_CONCURRENCY": "2"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen(
        [str(BIN), *args, "--no-progress"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _ingest(dsn: str, fleet: Path) -> subprocess.Popen:
    return _cli(dsn, "ingest", str(fleet))


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _rows(dsn: str) -> int:
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            return conn.execute("SELECT count(*) FROM log_lines").fetchone()[0]
    except psycopg.Error:
        return 0


def _wait_for_rows(dsn: str, proc: subprocess.Popen, at_least: int = 1, timeout: float = 120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if _rows(dsn) >= at_least:
            return
        if proc.poll() is not None:
            pytest.fail(f"the ingest ended before the fault: {proc.communicate()}")
        time.sleep(0.05)
    pytest.fail("no rows stored in time")


def _stored(dsn: str) -> set[tuple[str, str]]:
    with psycopg.connect(dsn) as conn:
        return {(r, str(m)) for r, m in conn.execute("SELECT rxid, line_md5 FROM log_lines")}


def _statuses(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM ingested_files GROUP BY 1"))


@pytest.fixture(scope="module")
def clean(cluster, fleet) -> set:
    dsn = _new_db(cluster)
    rc, out, err = _finish(_ingest(dsn, fleet))
    assert rc == 0, err
    stored = _stored(dsn)
    assert len(stored) > 100_000 and set(_statuses(dsn)) == {"done"}
    return stored


def _rerun_matches_clean(dsn: str, fleet: Path, clean: set) -> None:
    rc, out, err = _finish(_ingest(dsn, fleet))
    assert rc == 0, err
    assert "Traceback" not in err
    assert set(_statuses(dsn)) == {"done"}
    got = _stored(dsn)
    assert len(got) == len(clean) and got == clean


def test_postgresql_restart_mid_ingest_is_ridden_out(cluster, fleet, clean):
    dsn = _new_db(cluster)
    proc = _ingest(dsn, fleet)
    _wait_for_rows(dsn, proc, 5_000)
    _pg_ctl(cluster, "restart")  # ~1.5 s: within the loaders' backoff
    rc, out, err = _finish(proc)
    assert rc == 0, err
    assert "Traceback" not in err
    assert _stored(dsn) == clean and set(_statuses(dsn)) == {"done"}  # no re-run needed


def test_postgresql_gone_mid_ingest_exits_4_and_the_rerun_finishes(cluster, fleet, clean):
    dsn = _new_db(cluster)
    proc = _ingest(dsn, fleet)
    _wait_for_rows(dsn, proc, 5_000)
    _pg_ctl(cluster, "stop")
    try:
        rc, out, err = _finish(proc)
    finally:
        _pg_ctl(cluster, "start")
    assert rc == 4, (out, err)
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "the database went away" in errors[0], err
    assert "Hint:" in err
    _rerun_matches_clean(dsn, fleet, clean)


def test_cancelled_copy_is_retried(cluster, fleet, clean):
    dsn = _new_db(cluster)
    proc = _ingest(dsn, fleet)
    _wait_for_rows(dsn, proc, 1)
    cancelled = 0
    with psycopg.connect(cluster.get_uri(), autocommit=True) as conn:
        while proc.poll() is None and cancelled < 3:
            got = conn.execute(
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity"
                " WHERE query LIKE 'COPY%%' AND state = 'active' AND datname = %s",
                (psycopg.conninfo.conninfo_to_dict(dsn)["dbname"],),
            ).fetchall()
            cancelled += sum(1 for (ok,) in got if ok)
            time.sleep(0.02)
    rc, out, err = _finish(proc)
    assert cancelled >= 1, "no COPY was caught running"
    assert rc == 0, err
    assert _stored(dsn) == clean and set(_statuses(dsn)) == {"done"}


@pytest.mark.parametrize("how", ["ctrl-c", "kill -9 driver", "kill -9 loader"])
def test_interrupted_ingest_rerun_stores_exactly_a_clean_load(cluster, fleet, clean, how):
    dsn = _new_db(cluster)
    proc = _ingest(dsn, fleet)
    _wait_for_rows(dsn, proc, 5_000)
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)
        rc, out, err = _finish(proc, timeout=120)
        assert rc == 130 and "interrupted" in err and "Traceback" not in err, (rc, err)
    elif how == "kill -9 driver":
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        _kill_ray_leftovers(proc.pid)
    else:
        loaders = [
            p
            for p in psutil.Process(proc.pid).children(recursive=True)
            if "FileLoader" in " ".join(p.cmdline()) or "MapWorker" in " ".join(p.cmdline())
        ]
        assert loaders, "no loader process found"
        loaders[0].kill()
        rc, out, err = _finish(proc)
        assert rc in (0, 1, 3), err  # Ray may retry the file or report it; never a hang
        assert "Traceback" not in err.split("Error:")[-1]
    _rerun_matches_clean(dsn, fleet, clean)


def _kill_ray_leftovers(session_leader: int) -> None:
    """A driver killed with -9 cannot stop the local Ray it started: do it for it."""
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if os.getsid(p.pid) == session_leader:
                p.kill()
        except (psutil.Error, OSError):
            pass


def _snapshot(dsn: str, table: str) -> list:
    with psycopg.connect(dsn) as conn:
        return [
            r[0]
            for r in conn.execute(
                sql.SQL(
                    "SELECT to_jsonb(t) - 'updated_at' - 'scored_at' - 'created_at' FROM {} t"
                    " ORDER BY 1::text"
                ).format(sql.Identifier(table))
            )
        ]


def _kill_when_rows(dsn: str, proc: subprocess.Popen, table: str) -> None:
    """kill -9 the command (and its local Ray) as soon as it has written a row of ``table``."""
    end = time.monotonic() + 240
    while time.monotonic() < end and proc.poll() is None:
        with psycopg.connect(dsn) as conn:
            q = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table))
            if conn.execute(q).fetchone()[0]:
                break
        time.sleep(0.05)
    assert proc.poll() is None, f"the command ended before the fault: {proc.communicate()}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    _kill_ray_leftovers(proc.pid)


def test_killed_sessionize_and_detect_reruns_match_an_uninterrupted_run(cluster, fleet, clean):
    dsn = _new_db(cluster)
    assert _finish(_ingest(dsn, fleet))[0] == 0
    rc, out, err = _finish(_cli(dsn, "run", "--steps", "sessionize,train,detect"), timeout=600)
    assert rc == 0, err
    sessions, scores = _snapshot(dsn, "sessions"), _snapshot(dsn, "anomalies")
    verdicts = _snapshot(dsn, "anomalies_consolidated")  # the flagged sessions
    assert len(sessions) > 50 and len(scores) >= len(sessions) and 0 < len(verdicts)

    with psycopg.connect(dsn, autocommit=True) as conn:  # forget the analysis, keep the model
        conn.execute("TRUNCATE sessions, devices, anomalies, anomalies_consolidated CASCADE")
    _kill_when_rows(dsn, _cli(dsn, "sessionize"), "sessions")
    assert _finish(_cli(dsn, "sessionize"))[0] == 0
    _kill_when_rows(dsn, _cli(dsn, "detect"), "anomalies")
    rc, out, err = _finish(_cli(dsn, "detect"))
    assert rc == 0, err
    # compared after detect: it writes each session's verdict back into its row
    _assert_same(_snapshot(dsn, "sessions"), sessions)
    _assert_same(_snapshot(dsn, "anomalies"), scores)
    _assert_same(_snapshot(dsn, "anomalies_consolidated"), verdicts)


def _assert_same(got: list[dict], want: list[dict]) -> None:
    """Equal rows; else name the first row and the columns that differ."""
    key = lambda r: (r["rxid"], r["session_id"], r.get("detector"))  # noqa: E731
    g, w = {key(r): r for r in got}, {key(r): r for r in want}
    assert g.keys() == w.keys(), (sorted(g.keys() - w.keys())[:3], sorted(w.keys() - g.keys())[:3])
    for k in w:
        diff = {c: (g[k].get(c), w[k][c]) for c in w[k] if g[k].get(c) != w[k][c]}
        assert not diff, (k, diff)
