#!/usr/bin/env python3
"""HTTP benchmark of the jam-software device routes: requests/s and p50/p99 latency of
``GET /jam-software/devices/{rxid}/pending`` and ``POST /jam-software/events`` through Ray
Serve (proxy + one replica) on loopback, against the same library calls made in-process.

Why: the device routes are the fleet's hot path (every box polls and reports), and the only
fair question about the HTTP layer is what it costs on top of the work itself, measured in
one run on one machine and one database. A third side runs the same FastAPI app under plain
uvicorn (no Ray), to tell the cost of HTTP + FastAPI from that of Serve. Each request is the
same work on both sides: token check (``tokens.authenticate``) plus ``jam.pending_for_device``
or ``jam.record_event``, with one pooled connection. Clients are asyncio tasks (aiohttp, one
connection each) in this process; in-process callers are threads over a psycopg pool of the same
size.

    .venv/bin/python bench/serve.py [--devices 200] [--clients 16] [--seconds 10] [--keep-db]

Scoring (``--part score``, also in the default ``all``): ``POST /v1/score`` through Serve with
tiny detectors trained at the start (tests/test_score.py's synthetic boxes and trainer):

- single-session requests sent open-loop at fixed rates (``--rates``), latency measured from
  each request's scheduled start, so a server that falls behind shows it in p99 (no
  coordinated omission); errors = non-200 or transport failures;
- batched: ``--batch-clients`` clients posting ``--batch-size`` sessions per request back to
  back: sessions/s;
- the reference, in the same run: the same models called in-process
  (``scoring.score_flat``, the function the replica runs), one session per call and
  ``--batch-size`` per call.

Uses LOGALYZER_DSN when set, else the embedded PostgreSQL; makes a fresh database and drops it.
Results go to bench/out/serve.json (``--part score``: bench/out/serve_score.json).
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


async def _http(
    url: str, kind: str, devices, push_id, clients: int, seconds: float, warmup: float
) -> dict:
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
                        r = await s.get(
                            f"{url}/jam-software/devices/{rxid}/pending", headers=headers
                        )
                    else:
                        r = await s.post(
                            f"{url}/jam-software/events",
                            headers=headers,
                            json={
                                "rxid": rxid,
                                "event_type": "download_progress",
                                "push_id": str(push_id),
                                "pct": i % 100,
                            },
                        )
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
    from logalyzer.http.app import Service, create_api
    from logalyzer.settings import Settings

    dsn = os.environ["BENCH_DSN"]
    return create_api(
        Service(dsn, Settings(dsn=dsn, serve_db_pool=int(os.environ.get("BENCH_POOL", "8"))))
    )


def start_uvicorn(dsn: str, port: int, pool: int):
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
            "warning",
            "--no-access-log",
        ],
        cwd=HERE.parent,
        env={**os.environ, "BENCH_DSN": dsn, "BENCH_POOL": str(pool)},
    )
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


# --------------------------------------------------------------------------- scoring


def score_bodies(n_boxes: int = 8):
    """Sessions (measures + event keys) of synthetic boxes (bench/_common.py)."""
    from _common import synthetic_sessions

    return synthetic_sessions(n_boxes)


def run_inprocess_score(models: dict, sessions: list[dict], batch: int, seconds: float) -> dict:
    """The replica's scoring function called directly: one call per ``batch`` sessions."""
    from logalyzer.core.verdict import score_flat

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


async def _open_loop(
    url: str, secret: str, sessions: list[dict], rate: float, seconds: float
) -> dict:
    """Single-session requests at ``rate`` per second, each on its own task (open loop)."""
    import aiohttp

    lat: list[float] = []
    errors = 0
    batches: list[int] = []
    headers = {"Authorization": f"Bearer {secret}"}
    bodies = [json.dumps({"sessions": [s]}) for s in sessions[:500]]
    conn = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(
        connector=conn, headers={**headers, "content-type": "application/json"}
    ) as s:

        async def one(k: int, due: float):
            nonlocal errors
            try:
                async with s.post(
                    f"{url}/v1/score",
                    data=bodies[k % len(bodies)],
                    timeout=aiohttp.ClientTimeout(total=30),
                ) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                        return
                    batches.append(int(r.headers.get("x-score-batch", "0")))
            except (TimeoutError, aiohttp.ClientError):
                errors += 1
                return
            lat.append(time.perf_counter() - due)

        start = time.perf_counter() + 0.1
        total = int(rate * seconds)
        tasks = []
        for k in range(total):
            due = start + k / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(k, due)))
        await asyncio.gather(*tasks)
        took = time.perf_counter() - start
    out = summarise(lat, errors, took)
    out.update(
        offered_rps=rate, mean_batch=round(sum(batches) / len(batches), 1) if batches else None
    )
    return out


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


def bench_score(args, dsn: str, url: str, result: dict) -> None:
    """The scoring part: open-loop single-session rates, batched throughput, in-process
    reference."""
    import psycopg
    from _common import small_models

    from logalyzer.store import tokens
    from logalyzer.store.db import Database
    from logalyzer.store.registry import load

    db = Database(dsn)
    t0 = time.perf_counter()
    small_models(db, score_bodies(4))
    result["score_train_s"] = round(time.perf_counter() - t0, 1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        secret = tokens.create_token(conn, admin=True, name="bench")[1]
    import httpx

    r = httpx.post(
        f"{url}/v1/models/reload", headers={"Authorization": f"Bearer {secret}"}, timeout=60
    )
    r.raise_for_status()
    sessions = score_bodies()
    result["score_sessions_pool"] = len(sessions)
    result["score_mean_events"] = round(
        sum(len(s["event_keys"]) for s in sessions) / len(sessions), 1
    )
    models = {k: load(db, k) for k in ("lstm", "ae")}
    result["score_inprocess_single"] = run_inprocess_score(models, sessions, 1, args.seconds / 2)
    result["score_inprocess_batch"] = run_inprocess_score(
        models, sessions, args.batch_size, args.seconds / 2
    )
    asyncio.run(_open_loop(url, secret, sessions, 20, 2))  # warm-up
    result["score_rates"] = []
    for rate in args.rates:
        res = asyncio.run(_open_loop(url, secret, sessions, rate, args.seconds))
        res["offered_rps"] = rate
        result["score_rates"].append(res)
    result["score_batched"] = asyncio.run(
        _batched(url, secret, sessions, args.batch_size, args.batch_clients, args.seconds)
    )
    result["score_batched_ratio"] = round(
        result["score_batched"]["sessions_per_s"]
        / result["score_inprocess_batch"]["sessions_per_s"],
        3,
    )


def print_score(result: dict) -> None:
    ref1, refb = result["score_inprocess_single"], result["score_inprocess_batch"]
    print(
        f"scoring: {result['score_sessions_pool']} distinct sessions, "
        f"mean {result['score_mean_events']} events"
    )
    print(
        f"  in-process, 1 session per call:  {ref1['sessions_per_s']:>9,.0f} sessions/s  "
        f"(p50 {ref1['p50_ms']} ms, p99 {ref1['p99_ms']} ms)"
    )
    print(
        f"  in-process, {result['batch_size']} per call:       "
        f"{refb['sessions_per_s']:>9,.0f} sessions/s  (p50 {refb['p50_ms']} ms)"
    )
    print(
        f"  {'offered req/s':>14}{'done req/s':>12}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'batch':>7}"
    )
    for r in result["score_rates"]:
        print(
            f"  {r['offered_rps']:>14}{r['rps']:>12,.0f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}"
            f"{r['errors']:>8}{r['mean_batch'] or 0:>7}"
        )
    b = result["score_batched"]
    print(
        f"  batched through Serve "
        f"({result['batch_clients']} clients x {result['batch_size']} sessions): "
        f"{b['sessions_per_s']:,.0f} sessions/s "
        f"(p50 {b['p50_ms']} ms, p99 {b['p99_ms']} ms, errors {b['errors']}); "
        f"serve / in-process: {result['score_batched_ratio']:.3f}"
    )


def direct_ingress_url() -> str:
    """With direct ingress, the ingress replica listens itself on a port in 30000-31000."""
    import psutil
    import ray
    from ray.util.state import list_actors

    actors = list_actors(
        address=ray.get_runtime_context().gcs_address, filters=[("state", "=", "ALIVE")]
    )
    pid = next(a.pid for a in actors if "LogalyzerAPI" in a.class_name)
    port = next(
        c.laddr.port
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.status == "LISTEN" and 30000 <= c.laddr.port <= 31000
    )
    return f"http://127.0.0.1:{port}"


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--devices",
        type=int,
        default=200,
        help="boxes, each with its own token and one pending push",
    )
    ap.add_argument(
        "--clients", type=int, default=16, help="concurrent clients (and in-process threads)"
    )
    ap.add_argument(
        "--seconds", type=float, default=10.0, help="measured seconds per route and side"
    )
    ap.add_argument(
        "--warmup", type=float, default=2.0, help="unmeasured seconds before each measurement"
    )
    ap.add_argument(
        "--access-log",
        action="store_true",
        help="keep Serve's per-request log line (off by default here)",
    )
    ap.add_argument("--keep-db", action="store_true", help="keep the benchmark database")
    ap.add_argument(
        "--home", type=Path, default=None, help="LOGALYZER_HOME for the embedded server"
    )
    ap.add_argument(
        "--part", choices=("all", "jam", "score"), default="all", help="which routes to measure"
    )
    ap.add_argument(
        "--rates",
        type=lambda v: [float(x) for x in v.split(",")],
        default=[50, 100, 200, 300],
        help="offered single-session scoring rates, req/s (comma-separated)",
    )
    ap.add_argument(
        "--batch-size", type=int, default=250, help="sessions per batched scoring request"
    )
    ap.add_argument(
        "--batch-clients", type=int, default=4, help="concurrent batched scoring clients"
    )
    ap.add_argument("--replicas", type=int, default=1, help="LogalyzerAPI replicas")
    ap.add_argument(
        "--throughput-optimized",
        action="store_true",
        help="RAY_SERVE_THROUGHPUT_OPTIMIZED=1 (Ray 2.60, experimental): direct ingress "
        "(the replica serves HTTP itself on a port in 30000-31000, no proxy hop), gRPC, user "
        "code on the replica's main loop; scoring is then measured against the replica's own port",
    )
    args = ap.parse_args(argv)
    if args.throughput_optimized:  # before Ray starts: its workers inherit the environment
        os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"

    import psycopg
    from _common import fresh_database

    from logalyzer.core.jam import PushRequest
    from logalyzer.http import serving
    from logalyzer.settings import Settings
    from logalyzer.store import jam, tokens

    base = Settings(**({"home": args.home} if args.home else {}))
    result: dict = {
        "throughput_optimized": args.throughput_optimized,
        "devices": args.devices,
        "clients": args.clients,
        "seconds": args.seconds,
        "access_log": args.access_log,
        "part": args.part,
        "replicas": args.replicas,
        "batch_size": args.batch_size,
        "batch_clients": args.batch_clients,
        "cpus": os.cpu_count(),
        "load_start": round(os.getloadavg()[0], 2),
    }
    with fresh_database(base, keep=args.keep_db) as (_, db):
        dsn = db.dsn
        with psycopg.connect(dsn, autocommit=True) as conn:
            devices = []
            for i in range(args.devices):
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
        push_id = push["push_id"]
        settings = base.model_copy(
            update={"dsn": dsn, "serve_db_pool": args.clients, "serve_access_log": args.access_log}
        )
        jam_part = args.part in ("all", "jam")
        if jam_part:
            uv = start_uvicorn(dsn, free_port(), args.clients)
            uv_url = f"http://127.0.0.1:{uv.args[uv.args.index('--port') + 1]}"
        t0 = time.perf_counter()
        url = serving.start(settings, dsn, "127.0.0.1", free_port(), replicas=args.replicas)
        result["serve_start_s"] = round(time.perf_counter() - t0, 1)
        if jam_part:
            # the floor: Serve's proxy and the FastAPI app with no token check and no database
            result["healthz_serve"] = run_http(
                url, "healthz", devices, push_id, args.clients, args.seconds, args.warmup
            )
            for kind in ("pending", "events"):
                result[f"{kind}_inprocess"] = run_inprocess(
                    dsn, kind, devices, push_id, args.clients, args.seconds, args.warmup
                )
                result[f"{kind}_serve"] = run_http(
                    url, kind, devices, push_id, args.clients, args.seconds, args.warmup
                )
                result[f"{kind}_uvicorn"] = run_http(
                    uv_url, kind, devices, push_id, args.clients, args.seconds, args.warmup
                )
                result[f"{kind}_ratio"] = round(
                    result[f"{kind}_serve"]["rps"] / result[f"{kind}_inprocess"]["rps"], 3
                )
            result["healthz_uvicorn"] = run_http(
                uv_url, "healthz", devices, push_id, args.clients, args.seconds, args.warmup
            )
            uv.terminate()
            uv.wait(30)
        if args.throughput_optimized:
            url = direct_ingress_url()
            result["direct_ingress_url"] = url
        if args.part in ("all", "score"):
            bench_score(args, dsn, url, result)
        from ray import serve

        serve.shutdown()
    result["load_end"] = round(os.getloadavg()[0], 2)

    print(
        f"{args.devices} devices, {args.clients} concurrent clients, "
        f"{args.seconds:g} s per measurement, "
        f"{result['cpus']} CPUs, load average {result['load_start']} -> {result['load_end']}; "
        f"Serve started in {result['serve_start_s']} s (not counted), {args.replicas} replica(s)"
    )
    if "healthz_serve" in result:
        print(f"{'route':<34}{'side':<12}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
        for side in ("serve", "uvicorn"):
            r = result[f"healthz_{side}"]
            print(
                f"{'GET  /healthz (floor: no DB)':<34}{side:<12}"
                f"{r['rps']:>9,.0f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['errors']:>8}"
            )
        for kind, route in (
            ("pending", "GET  /devices/{rxid}/pending"),
            ("events", "POST /events"),
        ):
            for side in ("inprocess", "serve", "uvicorn"):
                r = result[f"{kind}_{side}"]
                print(
                    f"{route:<34}{side:<12}{r['rps']:>9,.0f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['errors']:>8}"
                )
            print(f"{'':<34}{'serve / in-process req/s:':<12} {result[f'{kind}_ratio']:.3f}")
    if "score_rates" in result:
        print_score(result)
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    name = (
        "serve.json"
        if args.part == "all"
        else f"serve_{args.part}{'_tput' if args.throughput_optimized else ''}.json"
    )
    (out / name).write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
