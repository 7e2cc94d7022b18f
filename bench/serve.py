#!/usr/bin/env python3
"""HTTP benchmark of the fleet's hot routes: ``GET /jam-software/devices/{rxid}/pending``,
``POST /jam-software/events`` and single-session ``POST /v1/score``, three ways in one run, on
one machine and one database:

- **serve**: the default ``logalyzer serve`` (``serving.start``: Ray Serve replicas that answer
  HTTP themselves on the port, no proxy hop);
- **uvicorn**: the same FastAPI app (jam routes and scoring) under plain uvicorn in a
  subprocess, no Ray: the reference for what HTTP + FastAPI cost;
- **inprocess**: the library calls the routes make (``tokens.authenticate`` +
  ``jam.pending_for_device`` / ``jam.record_event``; ``score_flat``) from threads.

Two kinds of measurement:

- **capacity** (closed loop): ``--clients`` clients back to back for ``--seconds``: req/s and
  p50/p99, and the ratio serve / uvicorn;
- **open loop** at fixed offered rates (``--rates``, default 50,100,200,400 req/s) on each
  route and HTTP side: requests are sent on schedule whatever the server does, latency counted
  from each request's *scheduled* start (a server that falls behind shows it: no coordinated
  omission); answered = 2xx; refused = JSON 503 with Retry-After (counted, with their own
  p99); errors = anything else or no answer within 10 s;
- **batched scoring** through serve: ``--batch-clients`` clients posting ``--batch-size``
  sessions per request: sessions/s, against ``score_flat`` in-process.

    .venv/bin/python bench/serve.py [--devices 200] [--clients 16] [--seconds 6]
        [--rates 50,100,200,400]

Uses LOGALYZER_DSN when set, else the embedded PostgreSQL; makes a fresh database and drops it.
Results go to bench/out/serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def percentiles(lat: list[float]) -> dict:
    lat = sorted(lat)
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")
    return {"p50_ms": round(pick(0.50), 2), "p99_ms": round(pick(0.99), 2)}


def summarise(lat: list[float], errors: int, seconds: float) -> dict:
    return {
        "requests": len(lat),
        "errors": errors,
        "rps": round(len(lat) / seconds, 1),
        **percentiles(lat),
    }


# --------------------------------------------------------------------------- in-process


def run_inprocess(
    dsn: str,
    kind: str,
    devices: list[tuple[str, str]],
    push_id,
    clients: int,
    seconds: float,
    warmup: float,
) -> dict:
    """The library calls the route makes, from ``clients`` threads over a pool of that size."""
    from psycopg_pool import ConnectionPool

    from logalyzer.core.jam import EventIn
    from logalyzer.store import jam, tokens

    pool = ConnectionPool(
        dsn, min_size=clients, max_size=clients, kwargs={"autocommit": True}, open=True
    )
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
                        jam.record_event(
                            conn,
                            EventIn.model_validate(
                                {
                                    "rxid": tok.rxid,
                                    "event_type": "download_progress",
                                    "push_id": str(push_id),
                                    "pct": i % 100,
                                }
                            ),
                        )
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


async def _http(url: str, make, clients: int, seconds: float, warmup: float) -> dict:
    """``clients`` clients sending ``make(k)`` requests back to back (closed loop)."""
    import aiohttp

    lat: list[float] = []
    errors = refused = 0
    t_start = time.perf_counter()
    t_measure, t_end = t_start + warmup, t_start + warmup + seconds

    async def client(k: int):
        nonlocal errors, refused
        i = k
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
            while True:
                now = time.perf_counter()
                if now >= t_end:
                    return
                method, path, headers, body = make(i)
                i += clients
                try:
                    async with s.request(method, url + path, headers=headers, data=body) as r:
                        await r.read()
                        status = r.status
                except aiohttp.ClientError:
                    status = None
                done = time.perf_counter()
                if status == 503:
                    refused += 1
                elif status not in (200, 201):
                    errors += 1
                elif now >= t_measure:
                    lat.append(done - now)

    await asyncio.gather(*(client(k) for k in range(clients)))
    return {**summarise(lat, errors, seconds), "refused": refused}


def run_http(url: str, make, clients: int, seconds: float, warmup: float) -> dict:
    return asyncio.run(_http(url, make, clients, seconds, warmup))


# --------------------------------------------------------------------------- plain uvicorn


def asgi_app():
    """The same FastAPI app without Ray Serve, for ``uvicorn --factory`` (BENCH_DSN): what
    HTTP + FastAPI cost, apart from Serve. Scoring is enabled; outside a Serve replica it
    scores each request on its own (no ``@serve.batch``)."""
    from logalyzer.http.app import Service, create_api
    from logalyzer.http.score import enable
    from logalyzer.settings import Settings

    dsn = os.environ["BENCH_DSN"]
    settings = Settings(
        dsn=dsn, serve_db_pool=int(os.environ.get("BENCH_POOL", "8")), score_model_poll_s=1
    )
    service = Service(dsn, settings)
    return create_api(service, routers=(enable(service),))


def start_uvicorn(dsn: str, port: int, pool: int, access_log: bool):
    import subprocess

    import httpx

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "bench.serve:asgi_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "info" if access_log else "warning",
            "--access-log" if access_log else "--no-access-log",
        ],
        cwd=HERE.parent,
        # one torch thread, as in a replica (see run_inprocess_score)
        env={**os.environ, "BENCH_DSN": dsn, "BENCH_POOL": str(pool), "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL if access_log else None,  # the log's cost, not its lines
    )
    for _ in range(120):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
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


# --------------------------------------------------------------------------- scoring


def score_bodies(n_boxes: int = 8):
    """Sessions (measures + event keys) of synthetic boxes (bench/_common.py)."""
    from _common import synthetic_sessions

    return synthetic_sessions(n_boxes)


def run_inprocess_score(models: dict, sessions: list[dict], batch: int, seconds: float) -> dict:
    """The replica's scoring function called directly: one call per ``batch`` sessions, on one
    torch thread, as in a replica (Ray sets OMP_NUM_THREADS=1 in a one-CPU actor). With
    torch's default of a thread per core, a core busy with anything else (the client, the
    server) made scoring 14-30 times slower (measured: 250-session batches 1,073 vs 14,911
    sessions/s while PostgreSQL loaded rows on the other core)."""
    import torch

    from logalyzer.core.verdict import score_flat

    torch.set_num_threads(1)  # for the rest of this process: nothing after this trains
    lat, n, i = [], 0, 0
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        part = [sessions[(i + k) % len(sessions)] for k in range(batch)]
        i += batch
        t = time.perf_counter()
        score_flat(models, part)
        lat.append(time.perf_counter() - t)
        n += batch
    took = sum(lat)
    return {
        "calls": len(lat),
        "sessions": n,
        "sessions_per_s": round(n / took, 1),
        **percentiles(lat),
    }


def request_maker(kind: str, devices, push_id, admin: str, sessions: list[dict]):
    """k -> (method, path, headers, body) of the k-th request of route ``kind``; device routes
    rotate over the boxes (each with its own token)."""
    bodies = [json.dumps({"sessions": [s]}) for s in sessions[:500]]
    json_type = {"content-type": "application/json"}

    def make(k: int):
        if kind == "healthz":
            return "GET", "/healthz", {}, None
        if kind == "score":
            headers = {"Authorization": f"Bearer {admin}", **json_type}
            return "POST", "/v1/score", headers, bodies[k % len(bodies)]
        rxid, secret = devices[k % len(devices)]
        auth = {"Authorization": f"Bearer {secret}"}
        if kind == "pending":
            return "GET", f"/jam-software/devices/{rxid}/pending", auth, None
        if kind == "events":
            body = {
                "rxid": rxid,
                "event_type": "download_progress",
                "push_id": str(push_id),
                "pct": k % 100,
            }
            return "POST", "/jam-software/events", {**auth, **json_type}, json.dumps(body)
        raise ValueError(f"unknown route kind {kind!r}")

    return make


async def _open_loop(url: str, make, rate: float, seconds: float) -> dict:
    """Requests at ``rate`` per second for ``seconds``, each on its own task (open loop)."""
    import aiohttp

    lat: list[float] = []
    refused: list[float] = []
    errors = 0
    refused_not_json = 0
    batches: list[int] = []
    late: list[float] = []  # how late this client sent (its own share of the latency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)) as s:

        async def one(k: int, due: float):
            nonlocal errors, refused_not_json
            method, path, headers, body = make(k)
            try:
                async with s.request(
                    method,
                    url + path,
                    headers=headers,
                    data=body,
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as r:
                    raw = await r.read()
                    took = time.perf_counter() - due
                    if r.status == 503:
                        refused.append(took)
                        if not (raw.startswith(b"{") and r.headers.get("retry-after")):
                            refused_not_json += 1
                        return
                    if r.status not in (200, 201):
                        errors += 1
                        return
                    if "x-score-batch" in r.headers:
                        batches.append(int(r.headers["x-score-batch"]))
            except (TimeoutError, aiohttp.ClientError):
                errors += 1
                return
            lat.append(took)

        start = time.perf_counter() + 0.1
        tasks = []
        for k in range(int(rate * seconds)):
            due = start + k / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            late.append(max(0.0, time.perf_counter() - due))
            tasks.append(asyncio.create_task(one(k, due)))
        await asyncio.gather(*tasks)
    sent = len(tasks)
    out = summarise(lat, errors, seconds)
    out.update(
        offered_rps=rate,
        sent=sent,
        answered_pct=round(100 * len(lat) / sent, 2) if sent else None,
        refused=len(refused),
        refused_p99_ms=percentiles(refused)["p99_ms"] if refused else None,
        refused_not_json=refused_not_json,
        client_late_p99_ms=percentiles(late)["p99_ms"],
        mean_batch=round(sum(batches) / len(batches), 1) if batches else None,
    )
    return out


def open_loop(url: str, make, rate: float, seconds: float) -> dict:
    return asyncio.run(_open_loop(url, make, rate, seconds))


async def _batched(
    url: str, secret: str, sessions: list[dict], size: int, clients: int, seconds: float
) -> dict:
    import aiohttp

    n = 0
    lat: list[float] = []
    errors = 0
    bodies = [
        json.dumps({"sessions": [sessions[(k * size + j) % len(sessions)] for j in range(size)]})
        for k in range(8)
    ]
    headers = {"Authorization": f"Bearer {secret}", "content-type": "application/json"}
    t_end = time.perf_counter() + seconds

    async def client(k: int):
        nonlocal n, errors
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1), headers=headers
        ) as s:
            i = k
            while time.perf_counter() < t_end:
                t = time.perf_counter()
                async with s.post(f"{url}/v1/score", data=bodies[i % len(bodies)]) as r:
                    await r.read()
                    if r.status == 200:
                        n += size
                        lat.append(time.perf_counter() - t)
                    else:
                        errors += 1
                i += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    took = time.perf_counter() - t0
    return {
        "requests": len(lat),
        "errors": errors,
        "sessions": n,
        "sessions_per_s": round(n / took, 1),
        **percentiles(lat),
    }


# --------------------------------------------------------------------------- main

ROUTES = {
    "pending": "GET  /jam-software/devices/{rxid}/pending",
    "events": "POST /jam-software/events",
    "score": "POST /v1/score (1 session)",
}


def make_fleet(dsn: str, n: int):
    """``n`` boxes with a device token each and one push to all of them; an admin token."""
    import psycopg

    from logalyzer.core.jam import PushRequest
    from logalyzer.store import jam, tokens

    with psycopg.connect(dsn, autocommit=True) as conn:
        devices = []
        for i in range(n):
            rxid = f"R{9_000_000_000 + i:010d}"
            devices.append((rxid, tokens.create_token(conn, rxid=rxid)[1]))
        push = jam.create_push(
            conn,
            PushRequest.model_validate(
                {
                    "package": "com.example.player",
                    "version": "1.0",
                    "url": "https://apps.example.com/p.apk",
                    "sha256": "0" * 64,
                    "targets": {"rxids": [d[0] for d in devices]},
                }
            ),
            "bench",
            "bench",
        ).push
        admin = tokens.create_token(conn, admin=True, name="bench")[1]
    return devices, push["push_id"], admin


def wait_ready(url: str, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not become ready (models loaded) in {timeout:g} s")


def measure(args, dsn: str, fleet: tuple, sides: dict[str, str], result: dict) -> None:
    from logalyzer.store.db import Database
    from logalyzer.store.registry import load

    devices, push_id, admin = fleet
    sessions = score_bodies()
    result["score_sessions_pool"] = len(sessions)
    cap = result["capacity"] = {}
    for kind in () if args.no_capacity else ("healthz", "pending", "events"):
        make = request_maker(kind, devices, push_id, admin, sessions)
        cap[kind] = {}
        if kind != "healthz":
            cap[kind]["inprocess"] = run_inprocess(
                dsn, kind, devices, push_id, args.clients, args.seconds, args.warmup
            )
        for side, url in sides.items():
            cap[kind][side] = run_http(url, make, args.clients, args.seconds, args.warmup)
        cap[kind]["serve_over_uvicorn"] = round(
            cap[kind]["serve"]["rps"] / max(cap[kind]["uvicorn"]["rps"], 1e-9), 3
        )
    ol = result["open_loop"] = {}
    for kind in args.routes:
        make = request_maker(kind, devices, push_id, admin, sessions)
        ol[kind] = {side: [] for side in sides}
        for url in sides.values():
            open_loop(url, make, 20, 1)  # warm-up: connections, caches
        for rate in args.rates:
            for side, url in sides.items():  # interleaved: both sides see the same machine
                ol[kind][side].append(open_loop(url, make, rate, args.seconds))
    db = Database(dsn)
    models = {k: load(db, k) for k in ("lstm", "ae")}
    result["score_inprocess_single"] = run_inprocess_score(models, sessions, 1, args.seconds / 2)
    result["score_inprocess_batch"] = run_inprocess_score(
        models, sessions, args.batch_size, args.seconds / 2
    )
    result["score_batched"] = asyncio.run(
        _batched(sides["serve"], admin, sessions, args.batch_size, args.batch_clients, args.seconds)
    )


def report(result: dict, args) -> None:
    print(
        f"{args.devices} devices, {args.clients} closed-loop clients, "
        f"{args.seconds:g} s per measurement, {result['cpus']} CPUs, load average "
        f"{result['load_start']} -> {result['load_end']}; Serve started in "
        f"{result['serve_start_s']} s (not counted), {result['replicas']} replica(s)"
    )
    print("\ncapacity (closed loop)")
    print(
        f"  {'route':<44}{'side':<11}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'refused':>8}"
        f"{'errors':>8}"
    )
    for kind, by_side in result["capacity"].items():
        route = ROUTES.get(kind, "GET  /healthz (floor: no token, no DB)")
        for side in ("inprocess", "serve", "uvicorn"):
            if side in by_side:
                r = by_side[side]
                print(
                    f"  {route:<44}{side:<11}{r['rps']:>8,.0f}{r['p50_ms']:>9.1f}"
                    f"{r['p99_ms']:>9.1f}{r.get('refused', 0):>8}{r['errors']:>8}"
                )
        print(f"  {'':<44}{'serve / uvicorn':<19}{by_side['serve_over_uvicorn']:.3f}")
    print(
        "\nopen loop (latency from the scheduled start; refused = JSON 503 + Retry-After;"
        " late = p99 ms this client itself sent late, part of every latency)"
    )
    print(
        f"  {'route':<30}{'side':<9}{'offered':>8}{'done/s':>8}{'answered':>9}{'p50 ms':>8}"
        f"{'p99 ms':>8}{'refused':>8}{'ref p99':>8}{'errors':>7}{'batch':>6}{'late':>6}"
    )
    for kind, by_side in result["open_loop"].items():
        for i in range(len(args.rates)):
            for side, runs in by_side.items():
                r = runs[i]
                rp99 = "-" if r["refused_p99_ms"] is None else f"{r['refused_p99_ms']:.0f}"
                print(
                    f"  {ROUTES[kind][:30]:<30}{side:<9}{r['offered_rps']:>8.0f}{r['rps']:>8,.0f}"
                    f"{r['answered_pct']:>8.1f}%{r['p50_ms']:>8.1f}{r['p99_ms']:>8.1f}"
                    f"{r['refused']:>8}{rp99:>8}{r['errors']:>7}{r['mean_batch'] or '':>6}"
                    f"{r['client_late_p99_ms']:>6.0f}"
                )
    ref1, refb = result["score_inprocess_single"], result["score_inprocess_batch"]
    b = result["score_batched"]
    print(
        f"\nscoring in-process: {ref1['sessions_per_s']:,.0f} sessions/s one per call, "
        f"{refb['sessions_per_s']:,.0f} at {args.batch_size} per call; batched through serve "
        f"({args.batch_clients} clients x {args.batch_size} sessions): "
        f"{b['sessions_per_s']:,.0f} sessions/s (p50 {b['p50_ms']} ms, p99 {b['p99_ms']} ms, "
        f"errors {b['errors']})"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=200, help="boxes, each with its own token")
    ap.add_argument("--clients", type=int, default=16, help="closed-loop clients (and threads)")
    ap.add_argument("--seconds", type=float, default=6.0, help="seconds per measurement")
    ap.add_argument("--warmup", type=float, default=1.0, help="unmeasured closed-loop seconds")
    ap.add_argument(
        "--rates",
        type=lambda v: [float(x) for x in v.split(",")],
        default=[50, 100, 200, 400],
        help="offered open-loop rates, req/s (comma-separated)",
    )
    ap.add_argument(
        "--routes",
        type=lambda v: v.split(","),
        default=list(ROUTES),
        help=f"open-loop routes (comma-separated, of {','.join(ROUTES)})",
    )
    ap.add_argument("--no-capacity", action="store_true", help="skip the closed-loop part")
    ap.add_argument("--batch-size", type=int, default=250, help="sessions per batched request")
    ap.add_argument("--batch-clients", type=int, default=4, help="batched scoring clients")
    ap.add_argument("--keep-db", action="store_true", help="keep the benchmark database")
    ap.add_argument("--home", type=Path, default=None, help="LOGALYZER_HOME (embedded server)")
    args = ap.parse_args(argv)

    from _common import fresh_database, small_models

    from logalyzer.http import serving
    from logalyzer.settings import Settings

    base = Settings(**({"home": args.home} if args.home else {}))
    result: dict = {
        "devices": args.devices,
        "clients": args.clients,
        "seconds": args.seconds,
        "rates": args.rates,
        "batch_size": args.batch_size,
        "batch_clients": args.batch_clients,
        "cpus": os.cpu_count(),
        "load_start": round(os.getloadavg()[0], 2),
    }
    with fresh_database(base, keep=args.keep_db) as (_, db):
        dsn = db.dsn
        fleet = make_fleet(dsn, args.devices)
        small_models(db, score_bodies(4))  # before the servers start: they load them at once
        # the default deployment, as `logalyzer serve` starts it, with the pool the clients need
        settings = base.model_copy(
            update={"dsn": dsn, "serve_db_pool": args.clients, "score_model_poll_s": 1}
        )
        result["replicas"] = settings.serve_replicas
        result["access_log"] = settings.serve_access_log
        uv_port = free_port()
        uv = start_uvicorn(dsn, uv_port, args.clients, settings.serve_access_log)
        try:
            t0 = time.perf_counter()
            url = serving.start(settings, dsn, "127.0.0.1", free_port())
            result["serve_start_s"] = round(time.perf_counter() - t0, 1)
            sides = {"serve": url, "uvicorn": f"http://127.0.0.1:{uv_port}"}
            for u in sides.values():
                wait_ready(u)
            measure(args, dsn, fleet, sides, result)
        finally:
            uv.terminate()
            uv.wait(30)
            from ray import serve

            serve.shutdown()
    result["load_end"] = round(os.getloadavg()[0], 2)
    report(result, args)
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "serve.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
