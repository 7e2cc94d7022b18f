"""Where a /v1/score request's CPU goes: single-session requests at RATE req/s for SECS seconds
through Serve, with each Ray process's CPU seconds over the window (ms per request), and with
PROFILE=1 py-spy collapsed stacks of the replica (and of a proxy, were one running) in PROF_OUT
(/tmp/sv/prof). DIRECT_PORT=1 sends to a Serve direct-ingress port (30000-31000) instead, for
comparing with Ray's experimental mode (RAY_SERVE_THROUGHPUT_OPTIMIZED=1). Makes a database on
LOGALYZER_DSN and drops it. Numbers and findings: bench/README.md."""

import asyncio
import json
import os
import secrets
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import psycopg
from psycopg import sql

from bench._common import small_models
from bench.serve import _open_loop, free_port, request_maker, score_bodies
from logalyzer.http import serving
from logalyzer.settings import Settings
from logalyzer.store import tokens
from logalyzer.store.db import Database, migrate

OUT = os.environ.get("PROF_OUT", "/tmp/sv/prof")
os.makedirs(OUT, exist_ok=True)
RATE = float(os.environ.get("RATE", "40"))
SECS = float(os.environ.get("SECS", "12"))
base = os.environ["LOGALYZER_DSN"]
name = f"prof_{secrets.token_hex(4)}"
with psycopg.connect(base, autocommit=True) as c:
    c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
p = psycopg.conninfo.conninfo_to_dict(base)
p["dbname"] = name
dsn = psycopg.conninfo.make_conninfo(**p)
try:
    with psycopg.connect(dsn, autocommit=True) as c:
        migrate(c)
        secret = tokens.create_token(c, admin=True)[1]
    small_models(Database(dsn), score_bodies(4))
    extra = json.loads(os.environ.get("EXTRA", "{}"))
    st = Settings(dsn=dsn, serve_access_log=False, **extra)
    url = serving.start(st, dsn, "127.0.0.1", free_port())
    import httpx

    httpx.post(
        f"{url}/v1/models/reload", headers={"Authorization": f"Bearer {secret}"}, timeout=60
    ).raise_for_status()
    sessions = score_bodies(2)
    asyncio.run(_open_loop(url, secret, sessions, 20, 2))
    from ray.util.state import list_actors

    pids = {
        a.class_name.split(":")[-1]: a.pid
        for a in list_actors(
            address=__import__("ray").get_runtime_context().gcs_address,
            filters=[("state", "=", "ALIVE")],
        )
        if a.class_name in ("ProxyActor",) or "LogalyzerAPI" in a.class_name
    }
    print("pids", pids, flush=True)
    import psutil

    for n, pid in pids.items():
        ports = [
            c.laddr.port
            for c in psutil.Process(pid).net_connections(kind="tcp")
            if c.status == "LISTEN"
        ]
        print("listen", n, ports, flush=True)
    if os.environ.get("DIRECT_PORT"):
        port = [
            c.laddr.port
            for c in psutil.Process(pids["LogalyzerAPI"]).net_connections(kind="tcp")
            if c.status == "LISTEN" and 30000 <= c.laddr.port <= 31000
        ][0]
        url = f"http://127.0.0.1:{port}"
        print("direct url", url, httpx.get(url + "/readyz").status_code, flush=True)
    procs = []
    if os.environ.get("PROFILE", "1") == "1":
        for n, pid in pids.items():
            procs.append(
                subprocess.Popen(
                    [
                        os.path.join(os.path.dirname(sys.executable), "py-spy"),
                        "record",
                        "-p",
                        str(pid),
                        "-d",
                        str(int(SECS)),
                        "-r",
                        "50",
                        "-f",
                        "raw",
                        "-o",
                        os.path.join(OUT, f"{n}.txt"),
                        "--nonblocking",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.STDOUT,
                )
            )
    import psutil

    def snap():
        out = {}
        for pr in [psutil.Process()] + psutil.Process().children(recursive=True):
            try:
                t = pr.cpu_times()
                nm = (
                    " ".join(pr.cmdline()[:1])[-40:]
                    if pr.pid not in pids.values()
                    else [k for k, v in pids.items() if v == pr.pid][0]
                )
                out[pr.pid] = (pr.name() + ":" + nm, t.user + t.system)
            except psutil.Error:
                pass
        return out

    pg = lambda: sum(
        (lambda t: t.user + t.system)(q.cpu_times())
        for q in psutil.process_iter()
        if q.name().startswith("postgres")
    )
    a, pga = snap(), pg()
    make = request_maker("score", [], None, secret, sessions)
    res = asyncio.run(_open_loop(url, make, RATE, SECS))
    b, pgb = snap(), pg()
    n = res["requests"]
    rows = sorted(((b[k][1] - a[k][1], b[k][0]) for k in a if k in b), reverse=True)
    for d, nm in rows[:8]:
        print(f"cpu {d:7.2f} s  {1000 * d / max(n, 1):6.2f} ms/req  {nm}", flush=True)
    print(
        f"cpu {pgb - pga:7.2f} s  {1000 * (pgb - pga) / max(n, 1):6.2f} ms/req  "
        "postgres (all backends, includes others' load)",
        flush=True,
    )
    for pr in procs:
        pr.wait()
    print("load", RATE, res, flush=True)
    from ray import serve

    serve.shutdown()
finally:
    with psycopg.connect(base, autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
