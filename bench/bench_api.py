"""API benchmark: latency and throughput of the main read endpoints over loopback.

Starts ``accord serve`` (the hub and the API in one process, embedded SQLite)
in a subprocess on a free loopback port, seeds ``--records`` accounts and
invoices and a few exception items, creates an API key with ``accord keys``,
then loads each endpoint from this process with ``--concurrency`` threads
(one keep-alive httpx client each) for ``--seconds``, and prints p50, p99 and
requests per second. Figures are printed, never asserted.

    .venv/bin/python bench/bench_api.py --quick
    .venv/bin/python bench/bench_api.py --seconds 10 --concurrency 8
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from accord.store import Exceptions, Records, make_engine, upgrade

ROOT = Path(__file__).resolve().parents[1]
ACCORD = str(Path(sys.executable).with_name("accord"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _seed(url: str, count: int) -> None:
    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        records = Records(conn)
        for n in range(count):
            records.put(
                "account",
                f"acc-{n:06d}",
                {"legal_name": f"Customer {n}"},
                system="crm",
                actor="bench",
            )
            records.put(
                "invoice",
                f"inv-{n:06d}",
                {"status": "issued", "currency": "EUR", "gross": 100000 + n, "amount_due": 100000},
                system="stripe",
                actor="bench",
            )
        for n in range(20):
            Exceptions(conn).raise_("ownership_conflict", role="finance", summary=f"item {n}")
    engine.dispose()


def _load(base: str, path: str, key: str, seconds: float, concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker() -> None:
        mine: list[float] = []
        failed = 0
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
            while time.perf_counter() < stop:
                started = time.perf_counter()
                response = client.get(path)
                mine.append(time.perf_counter() - started)
                if response.status_code != 200:
                    failed += 1
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000

    return {
        "requests": len(latencies),
        "errors": errors[0],
        "p50_ms": round(pct(0.50), 2),
        "p99_ms": round(pct(0.99), 2),
        "rps": round(len(latencies) / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="2 s per endpoint, 500 records")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.records = 2.0, 500
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'accord.db'}"
        _seed(url, args.records)
        env = {
            **os.environ,
            "ACCORD_DATABASE_URL": url,
            "ACCORD_CONFIG": str(Path(tmp) / "accord.yaml"),
        }
        (Path(tmp) / "accord.yaml").write_text(
            "accord: 1\napi: {rate_limit_per_second: 1000000, rate_limit_burst: 1000000}\n"
        )
        key = subprocess.run(
            [ACCORD, "keys", "create", "--role", "auditor", "--name", "bench"],
            env=env,
            cwd=tmp,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        port = _free_port()
        server = subprocess.Popen(
            [ACCORD, "serve", "--port", str(port)],
            env=env,
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("accord serve did not become ready")
                time.sleep(0.2)
            paths = [
                "/v1/accounts/acc-000042",
                "/v1/accounts?limit=50",
                "/v1/invoices/inv-000042",
                "/v1/exceptions?limit=20",
                "/healthz",
            ]
            results = {}
            for path in paths:
                _load(base, path, key, 0.5, args.concurrency)  # warm up
                results[path] = _load(base, path, key, args.seconds, args.concurrency)
        finally:
            server.terminate()
            server.wait(30)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"API reads over loopback: accord serve (embedded SQLite, hub running), "
        f"{args.records} accounts + invoices, {args.concurrency} client threads, "
        f"{args.seconds:g} s per endpoint, {os.cpu_count()} cores shared"
    )
    print(f"{'endpoint':32} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'errors':>7}")
    for path, r in results.items():
        print(
            f"{path:32} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['rps']:8.1f} {int(r['errors']):7d}"
        )


if __name__ == "__main__":
    main()
