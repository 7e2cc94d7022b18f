#!/usr/bin/env python3
"""HTTP benchmark of the jam-software device routes: requests/s and p50/p99 latency of
``GET /jam-software/devices/{rxid}/pending`` and ``POST /jam-software/events`` through Ray
Serve (proxy + one replica) on loopback, against the same library calls made in-process.

Why: the device routes are the fleet's hot path (every box polls and reports), and the only
fair question about the HTTP layer is what it costs on top of the work itself, measured in
one run on one machine and one database. A third side runs the same FastAPI app under plain
uvicorn (no Ray), to tell the cost of HTTP + FastAPI from that of Serve. Each request is the same work on both sides: token
check (``tokens.authenticate``) plus ``jam.pending_for_device`` or ``jam.record_event``,
with one pooled connection. Clients are asyncio tasks (aiohttp, one connection each) in this
process; in-process callers are threads over a psycopg pool of the same size.

    .venv/bin/python bench/serve.py [--devices 200] [--clients 16] [--seconds 10] [--keep-db]

Uses LOGALYZER_DSN when set, else the embedded PostgreSQL; makes a fresh database and drops it.
Results go to bench/out/serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def percentiles(lat: list[float]) -> dict:
    lat = sorted(lat)
    pick = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan"))
    return {"p50_ms": round(pick(0.50), 2), "p99_ms": round(pick(0.99), 2)}


def summarise(lat: list[float], errors: int, seconds: float) -> dict:
    return {"requests": len(lat), "errors": errors, "rps": round(len(lat) / seconds, 1), **percentiles(lat)}


# --------------------------------------------------------------------------- in-process


def run_inprocess(dsn: str, kind: str, devices: list[tuple[str, str]], push_id, clients: int,
                  seconds: float, warmup: float) -> dict:
    """The library calls the route makes, from ``clients`` threads over a pool of that size."""
    from psycopg_pool import ConnectionPool

    from logalyzer import jam, tokens
    from logalyzer.jam_models import EventIn

    pool = ConnectionPool(dsn, min_size=clients, max_size=clients, kwargs={"autocommit": True}, open=True)
    pool.wait()
    lat: list[float] = []
    errors = [0]
    t_start = time.perf_counter()
    t_measure, t_end = t_start + warmup, t_start + warmup + seconds
    lock = threading.Lock()

    def worker(k: int):
        i, mine = k, []
        while True:
            now = time.perf_counter()
            if now >= t_end:
                break
            rxid, secret = devices[i % len(devices)]
            i += clients
            try:
                with pool.connection() as conn:
                    tok = tokens.authenticate(conn, secret)
                    if kind == "pending":
                        jam.pending_for_device(conn, tok.rxid)
                    else:
                        jam.record_event(conn, EventIn.model_validate(
                            {"rxid": tok.rxid, "event_type": "download_progress", "push_id": str(push_id), "pct": i % 100}))
            except Exception:
                with lock:
                    errors[0] += 1
                continue
            done = time.perf_counter()
            if now >= t_measure:
                mine.append(done - now)
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pool.close()
    return summarise(lat, errors[0], seconds)


# --------------------------------------------------------------------------- over HTTP


async def _http(url: str, kind: str, devices, push_id, clients: int, seconds: float, warmup: float) -> dict:
    import aiohttp

    lat: list[float] = []
    errors = 0
    t_start = time.perf_counter()
    t_measure, t_end = t_start + warmup, t_start + warmup + seconds

    async def client(k: int):
        nonlocal errors
        i = k
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
            while True:
                now = time.perf_counter()
                if now >= t_end:
                    return
                rxid, secret = devices[i % len(devices)]
                i += clients
                headers = {"Authorization": f"Bearer {secret}"}
                try:
                    if kind == "healthz":
                        r = await s.get(f"{url}/healthz")
                    elif kind == "pending":
                        r = await s.get(f"{url}/jam-software/devices/{rxid}/pending", headers=headers)
                    else:
                        r = await s.post(f"{url}/jam-software/events", headers=headers, json={
                            "rxid": rxid, "event_type": "download_progress", "push_id": str(push_id), "pct": i % 100})
                    await r.read()
                    ok = r.status in (200, 201)
                except aiohttp.ClientError:
                    ok = False
                done = time.perf_counter()
                if not ok:
                    errors += 1
                elif now >= t_measure:
                    lat.append(done - now)

    await asyncio.gather(*(client(k) for k in range(clients)))
    return summarise(lat, errors, seconds)


def run_http(url, kind, devices, push_id, clients, seconds, warmup) -> dict:
    return asyncio.run(_http(url, kind, devices, push_id, clients, seconds, warmup))


# --------------------------------------------------------------------------- plain uvicorn


def asgi_app():
    """The same FastAPI app without Ray Serve, for ``uvicorn --factory`` (BENCH_DSN): separates
    the cost of HTTP + FastAPI from the cost of Serve's proxy and replica hop."""
    from logalyzer.api import Service, create_api
    from logalyzer.settings import Settings

    dsn = os.environ["BENCH_DSN"]
    return create_api(Service(dsn, Settings(dsn=dsn, serve_db_pool=int(os.environ.get("BENCH_POOL", "8")))))


def start_uvicorn(dsn: str, port: int, pool: int):
    import subprocess

    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "bench.serve:asgi_app",
                             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"],
                            cwd=HERE.parent, env={**os.environ, "BENCH_DSN": dsn, "BENCH_POOL": str(pool)})
    for _ in range(120):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("uvicorn did not become ready")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=200, help="boxes, each with its own token and one pending push")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients (and in-process threads)")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per route and side")
    ap.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each measurement")
    ap.add_argument("--access-log", action="store_true", help="keep Serve's per-request log line (off by default here)")
    ap.add_argument("--keep-db", action="store_true", help="keep the benchmark database")
    ap.add_argument("--home", type=Path, default=None, help="LOGALYZER_HOME for the embedded server")
    args = ap.parse_args(argv)

    import psycopg
    from psycopg import sql

    from logalyzer import jam, serving, tokens
    from logalyzer.db import migrate, open_database
    from logalyzer.jam_models import PushRequest
    from logalyzer.settings import Settings

    base = Settings(**({"home": args.home} if args.home else {}))
    server = open_database(base, migrate_schema=False)
    name = f"bench_{secrets.token_hex(5)}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = psycopg.conninfo.conninfo_to_dict(server.dsn)
    params["dbname"] = name
    dsn = psycopg.conninfo.make_conninfo(**params)
    result: dict = {"devices": args.devices, "clients": args.clients, "seconds": args.seconds,
                    "access_log": args.access_log,
                    "cpus": os.cpu_count(), "load_start": round(os.getloadavg()[0], 2)}
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn)
            devices = []
            for i in range(args.devices):
                rxid = f"R{9_000_000_000 + i:010d}"
                devices.append((rxid, tokens.create_token(conn, rxid=rxid)[1]))
            push = jam.create_push(conn, PushRequest.model_validate({
                "package": "com.example.player", "version": "1.0", "url": "https://apps.example.com/p.apk",
                "sha256": "0" * 64, "targets": {"rxids": [d[0] for d in devices]}}), "bench", "bench").push
        push_id = push["push_id"]
        settings = base.model_copy(update={"dsn": dsn, "serve_db_pool": args.clients,
                                           "serve_access_log": args.access_log})
        uv = start_uvicorn(dsn, free_port(), args.clients)
        uv_url = f"http://127.0.0.1:{uv.args[uv.args.index('--port') + 1]}"
        t0 = time.perf_counter()
        url = serving.start(settings, dsn, "127.0.0.1", free_port())
        result["serve_start_s"] = round(time.perf_counter() - t0, 1)
        # the floor: Serve's proxy and the FastAPI app with no token check and no database
        result["healthz_serve"] = run_http(url, "healthz", devices, push_id, args.clients, args.seconds, args.warmup)
        for kind in ("pending", "events"):
            result[f"{kind}_inprocess"] = run_inprocess(dsn, kind, devices, push_id, args.clients, args.seconds, args.warmup)
            result[f"{kind}_serve"] = run_http(url, kind, devices, push_id, args.clients, args.seconds, args.warmup)
            result[f"{kind}_uvicorn"] = run_http(uv_url, kind, devices, push_id, args.clients, args.seconds, args.warmup)
            result[f"{kind}_ratio"] = round(result[f"{kind}_serve"]["rps"] / result[f"{kind}_inprocess"]["rps"], 3)
        result["healthz_uvicorn"] = run_http(uv_url, "healthz", devices, push_id, args.clients, args.seconds, args.warmup)
        uv.terminate()
        uv.wait(30)
        from ray import serve

        serve.shutdown()
    finally:
        if not args.keep_db:
            with psycopg.connect(server.dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    result["load_end"] = round(os.getloadavg()[0], 2)

    print(f"{args.devices} devices, {args.clients} concurrent clients, {args.seconds:g} s per measurement, "
          f"{result['cpus']} CPUs, load average {result['load_start']} -> {result['load_end']}; "
          f"Serve started in {result['serve_start_s']} s (not counted)")
    print(f"{'route':<34}{'side':<12}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for side in ("serve", "uvicorn"):
        r = result[f"healthz_{side}"]
        print(f"{'GET  /healthz (floor: no DB)':<34}{side:<12}{r['rps']:>9,.0f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['errors']:>8}")
    for kind, route in (("pending", "GET  /devices/{rxid}/pending"), ("events", "POST /events")):
        for side in ("inprocess", "serve", "uvicorn"):
            r = result[f"{kind}_{side}"]
            print(f"{route:<34}{side:<12}{r['rps']:>9,.0f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['errors']:>8}")
        print(f"{'':<34}{'serve / in-process req/s:':<12} {result[f'{kind}_ratio']:.3f}")
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "serve.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
