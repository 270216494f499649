"""``accord up`` (what ``make run`` runs): the whole product, live, on the embedded default.

It starts the vendor stand-ins (Salesforce, Harvest, Stripe, NetSuite) on
loopback, the hub on one SQLite file in ``--dir``, runs the consulting firm's
month through it (the same month as ``accord demo``: won deals, provisioning,
time and expenses, the amendment, invoices through a Stripe outage, payments,
a credit memo), creates an API key per role, and then serves the REST API and
the console until Ctrl-C, with the hub's workers dispatching in the same
process. Each start begins from a fresh store and fresh stand-ins.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

__all__ = ["ROLES_WITH_KEYS", "guide", "up"]

#: The roles ``accord up`` creates a key for, printed once at start.
ROLES_WITH_KEYS = ("admin", "finance", "pmo", "sales_ops", "auditor")


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else starts: a taken port fails at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SystemExit(f"accord up: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    return sock


def guide(
    url: str, keys: dict[str, str], trace_id: str | None, directory: Path, as_of: date
) -> str:
    """What ``accord up`` prints once it serves: the URL, the keys and three things to try.

    The dashboard link measures as of ``as_of``: the month's invoices are out,
    not yet paid.
    """
    admin = keys["admin"]
    lines = [
        f"Accord is running on {url}  (console {url}/console, API {url}/v1, "
        f"OpenAPI {url}/openapi.json)",
        f"  1. Open {url}/console?as_of={as_of.isoformat()} and sign in with the admin key {admin}",
        f"  2. Follow a deal from won to cash: {url}/console/traces/{trace_id}"
        f"  or  accord trace {trace_id} --db {directory / 'accord.db'}",
        f'  3. Ask the API: curl -H "Authorization: Bearer {admin}" {url}/v1/invoices',
        "Keys for the other roles (shown once): "
        + ", ".join(f"{role} {key}" for role, key in keys.items() if role != "admin"),
        "Ctrl-C stops the hub, the API and the stand-ins.",
    ]
    return "\n".join(lines)


def up(
    directory: Path,
    host: str = "127.0.0.1",
    port: int = 8700,
    *,
    echo: Callable[[str], Any] = print,
) -> None:
    """Set up, run the month, then serve until interrupted; everything stops on the way out."""
    import uvicorn
    from opentelemetry.sdk.trace import TracerProvider

    from accord.api.app import create_app
    from accord.api.keys import create_key
    from accord.q2c.demo import (
        DEMO_FILES,
        Endpoints,
        StandIns,
        open_context,
        run_month,
        seed_back_office,
        summarise,
    )
    from accord.q2c.scenario import seed
    from accord.tracing import install

    sock = _bind(host, port)
    url = f"http://{host}:{sock.getsockname()[1]}"
    directory.mkdir(parents=True, exist_ok=True)
    for name in DEMO_FILES:
        for suffix in ("", "-wal", "-shm", "-journal"):
            (directory / f"{name}{suffix}").unlink(missing_ok=True)
    facts = seed.default_facts()
    world = seed.pre_amendment_world(seed.load_world(), facts.amendment)
    echo("accord up: starting the stand-ins (Salesforce, Harvest, Stripe, NetSuite) …")
    stand_ins = StandIns().start()
    hub = None
    try:
        endpoints = Endpoints(
            database_url=f"sqlite:///{directory / 'accord.db'}",
            salesforce=stand_ins.salesforce.url,
            harvest=stand_ins.harvest.url,
            stripe=stand_ins.stripe.url,
            netsuite=stand_ins.netsuite.url,
            netsuite_credentials=stand_ins.netsuite.credentials,
            subsidiaries=seed_back_office(stand_ins, facts),
        )
        endpoints.dump(directory / "endpoints.json")
        hub, ctx = open_context(endpoints, world, facts, executor_id="up")
        echo("accord up: running the consulting firm's month through the hub …")
        summary = summarise(stand_ins, ctx, run_month(stand_ins, ctx))
        invoices = summary["invoices"]
        echo(
            f"accord up: {invoices['count']} invoices ("
            + ", ".join(f"{total} {currency}" for currency, total in invoices["totals"].items())
            + f"), {summary['payments']['count']} payments, "
            f"{sum(summary['exceptions']['open'].values())} open exceptions"
        )
        keys = {
            role: create_key(
                hub.engine, role, name=f"{role} key (accord up)", actor="accord up"
            ).secret
            for role in ROLES_WITH_KEYS
        }
        hub.worker.start()
        provider = TracerProvider()
        install(provider)
        app = create_app(hub, hub.settings, tracer_provider=provider)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_config=None,
                log_level=logging.WARNING,
                access_log=False,
                server_header=False,
            )
        )
        as_of = world.period_end + timedelta(days=15)
        echo(guide(url, keys, summary.get("trace_sample"), directory, as_of))
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it has already handled
            pass
    finally:
        sock.close()
        install(None)
        if hub is not None:
            hub.stop()
        stand_ins.stop()
        echo("accord up: stopped")
