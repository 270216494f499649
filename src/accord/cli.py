"""The ``accord`` command line."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from accord import __version__
from accord.billing.engine import fmt, price_text
from accord.billing.model import BillingRun
from accord.billing.recognition import LineRevenue, recognise_run
from accord.billing.scenario import load_scenario, run_to_json, simulate
from accord.config import EXAMPLE, Settings, load_settings
from accord.errors import InvalidInput
from accord.reconcile.cli import reconcile_app

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["app", "main"]

# The hub's commands import the runtime (DBOS, SQLAlchemy, NATS) when they run,
# so that `accord bill` and `accord --help` start quickly.

app = typer.Typer(
    name="accord",
    help="Accord keeps CRM, PSA, ERP and billing in agreement, from deal to cash.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"accord {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Accord: the open integration hub for professional-services firms."""


@app.command()
def bill(
    scenario: Annotated[Path, typer.Argument(help="Billing-scenario YAML file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
) -> None:
    """Simulate a billing run of a scenario file: what would be invoiced, held and skipped."""
    try:
        world = load_scenario(scenario)
        run = simulate(world)
        revenue = recognise_run(world, run)
    except InvalidInput as exc:
        typer.echo(f"accord bill: {scenario}: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        doc = run_to_json(run, world=world)
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    else:
        console = Console()
        _render(run, console)
        _render_revenue(revenue, console)


def _render(run: BillingRun, console: Console) -> None:
    if not run.invoices:
        console.print(f"Nothing to invoice as of {run.as_of}.")
    for inv in run.invoices:
        table = Table(
            title=(
                f"Invoice · contract {inv.contract} · {inv.entity} → {inv.bill_to} · "
                f"{inv.currency} · {inv.issue_date}"
            ),
            title_justify="left",
        )
        table.add_column("Line")
        table.add_column("Kind")
        table.add_column("Qty", justify="right")
        table.add_column("Unit price", justify="right")
        table.add_column("Amount", justify="right")
        table.add_column("Tax", justify="right")
        table.add_column("Sources")
        for number, line in enumerate(inv.lines, 1):
            table.add_row(
                f"{number}. {line.contract_line}",
                line.kind.value,
                fmt(line.quantity),
                price_text(line.unit_price, inv.currency),
                line.amount.format(),
                line.tax.format(),
                ", ".join(line.sources[:6]) + (" …" if len(line.sources) > 6 else ""),
            )
        console.print(table)
        for number, line in enumerate(inv.lines, 1):
            console.print(f"  {number}. {line.trace}", highlight=False)
        console.print(
            f"  Net [bold]{inv.net}[/]   Tax [bold]{inv.tax}[/]   Gross [bold]{inv.gross}[/]"
            + (f"   ({inv.functional} in the entity's currency)" if inv.functional else "")
        )
        console.print(f"  Tax: {inv.tax_trace}")
        if inv.reverse_charge:
            console.print(f"  Customer VAT id {inv.customer_tax_id or '—'}. {inv.legend}")
        console.print()
    for title, items in (("Held", run.held), ("Written off", run.written_off)):
        if items:
            console.print(
                f"{title}: " + ", ".join(f"{i.source} {i.amount} ({i.reason})" for i in items)
            )
    if run.skipped:
        console.print(
            "Skipped: " + ", ".join(f"{s.source} ({s.reason.value})" for s in run.skipped)
        )
    for ic in run.intercompany:
        console.print(
            f"Intercompany: {ic.from_entity} invoices {ic.to_entity} {ic.amount} "
            f"(cost + {fmt(ic.markup_percent)} %, {len(ic.lines)} entries)"
        )


def _render_revenue(revenue: tuple[LineRevenue, ...], console: Console) -> None:
    """One short table per contract: earned, billed and the balance of each line."""
    by_contract: dict[str, list[LineRevenue]] = {}
    for line in revenue:
        by_contract.setdefault(line.contract, []).append(line)
    for contract, lines in by_contract.items():
        first = lines[0]
        table = Table(
            title=(
                f"Revenue · contract {contract} · {first.currency} · "
                f"{first.period_start}..{first.period_end}"
            ),
            title_justify="left",
            box=box.SIMPLE_HEAD,
        )
        table.add_column("Line")
        table.add_column("Method")
        for column in ("Period", "To date", "Billed", "Asset", "Liability"):
            table.add_column(column, justify="right")
        for line in lines:
            table.add_row(
                line.contract_line,
                line.method.value.replace("_", " "),
                line.period_revenue.format(),
                line.cumulative_revenue.format(),
                line.billed_to_date.format(),
                line.contract_asset.format(),
                line.contract_liability.format(),
            )
        console.print(table)
        for line in lines:
            console.print(f"  {line.contract_line}: {line.trace}", highlight=False)
        console.print()


# -- the hub -------------------------------------------------------------------

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
events_app = typer.Typer(help="The canonical event stream.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
app.add_typer(events_app, name="events")
app.add_typer(reconcile_app, name="reconcile")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="accord.yaml (default: ACCORD_CONFIG or ./accord.yaml)."),
]


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except InvalidInput as exc:
        typer.echo(f"accord: {exc}", err=True)
        raise typer.Exit(2) from None


def _engine(config: Path | None) -> Engine:
    from accord.store import make_engine, upgrade

    engine = make_engine(_settings(config).database_url)
    upgrade(engine)
    return engine


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the example.")] = Path("accord.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented example accord.yaml."""
    if path.exists() and not force:
        typer.echo(f"accord init: {path} exists (use --force to overwrite)", err=True)
        raise typer.Exit(2)
    path.write_text(EXAMPLE)
    typer.echo(f"wrote {path}")


@app.command()
def worker(
    config: ConfigOption = None,
    worker_id: Annotated[
        str | None, typer.Option("--id", help="Executor id (default: ACCORD_WORKER_ID or local).")
    ] = None,
) -> None:
    """Run a worker: claim inbox events in batches and run their workflows until stopped."""
    from accord.bootstrap import build_hub

    settings = _settings(config)
    hub = build_hub(settings, executor_id=worker_id)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    hub.start()
    typer.echo(f"accord worker {hub.executor_id} running on {_redact(settings.database_url)}")
    try:
        stop.wait()
    finally:
        hub.stop()
        typer.echo("accord worker stopped")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@app.command()
def dlq(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List dead letters: events, effects and workflows that failed, with their reasons."""
    from accord.runtime.dlq import dead_letters

    letters = dead_letters(_engine(config), include_workflows=False)
    if as_json:
        rows = [
            {
                "id": d.id,
                "kind": d.kind,
                "reason": d.reason,
                "age_seconds": d.age.total_seconds() if d.age else None,
                "context": d.context,
            }
            for d in letters
        ]
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
        return
    if not letters:
        typer.echo("No dead letters.")
        return
    table = Table(title="Dead letters")
    for column in ("Id", "Kind", "Age", "Reason"):
        table.add_column(column, overflow="fold")
    for d in letters:
        table.add_row(d.id, d.kind, str(d.age).split(".")[0] if d.age else "", d.reason)
    Console().print(table)


@app.command()
def replay(
    dead_letter_id: Annotated[str, typer.Argument(metavar="ID", help="Dead letter id.")],
    config: ConfigOption = None,
) -> None:
    """Replay a dead letter after the fix (requeue, re-perform, or resume a workflow)."""
    from accord.bootstrap import build_hub
    from accord.runtime.dlq import replay as run_replay

    settings = _settings(config)
    hub = build_hub(settings)
    hub.start(dispatch=False)
    try:
        result = run_replay(hub.engine, dead_letter_id, actor="cli")
    except InvalidInput as exc:
        typer.echo(f"accord replay: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        hub.stop()
    typer.echo(json.dumps(result, default=str))


@audit_app.command("verify")
def audit_verify(config: ConfigOption = None) -> None:
    """Check the audit log's hash chain; exit 1 if an entry was altered, inserted or deleted."""
    from accord.store import verify

    with _engine(config).connect() as conn:
        report = verify(conn)
    typer.echo(str(report))
    if not report.ok:
        raise typer.Exit(1)


@events_app.command("replay")
def events_replay(
    since: Annotated[str, typer.Option("--since", help="Sequence number or ISO-8601 time.")],
    config: ConfigOption = None,
) -> None:
    """Print canonical change events from the stream, one JSON line each."""
    from accord.events.stream import open_stream, replay_to_lines

    settings = _settings(config)
    stream = open_stream(settings.nats_url, instance=settings.instance)
    try:
        for line in replay_to_lines(stream, since):
            sys.stdout.write(line + "\n")
    except InvalidInput as exc:
        typer.echo(f"accord events replay: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        stream.close()


@app.command()
def up(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the store goes (fresh at every start).")
    ] = Path(".accord"),
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="0: any free port.")] = 8700,
) -> None:
    """The whole product live: stand-ins, the hub, the consulting month, the API and console."""
    from accord.up import up as run_up

    run_up(directory, host, port, echo=lambda line: typer.echo(line))


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Default: api.host, 127.0.0.1.")
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="Default: api.port, 8700.")] = None,
) -> None:
    """Serve the REST API (/v1, /openapi.json) with the hub's workers in the same process."""
    from accord.api.serve import serve as run_server

    settings = _settings(config)
    typer.echo(
        f"accord serve on http://{host or settings.api.host}:"
        f"{settings.api.port if port is None else port} ({_redact(settings.database_url)})",
        err=True,
    )
    run_server(settings, host, port)


keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    role: Annotated[
        str,
        typer.Option("--role", help="admin, finance, pmo, sales_ops, auditor or integration."),
    ],
    name: Annotated[str, typer.Option("--name", help="What the key is for.")] = "",
    config: ConfigOption = None,
) -> None:
    """Create an API key and print it once; only its hash is stored."""
    from accord.api.keys import create_key

    try:
        created = create_key(_engine(config), role, name=name, actor="cli")
    except InvalidInput as exc:
        typer.echo(f"accord keys create: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(created.secret)
    typer.echo(
        f"key {created.key.id} (prefix {created.key.prefix}, role {role}): "
        "store it now, it cannot be shown again",
        err=True,
    )


@keys_app.command("list")
def keys_list(
    config: ConfigOption = None,
    revoked: Annotated[bool, typer.Option("--revoked", help="Include revoked keys.")] = False,
) -> None:
    """List API keys (never the keys themselves)."""
    from accord.api.keys import list_keys

    table = Table(title="API keys")
    for column in ("Id", "Prefix", "Role", "Name", "Created", "Revoked"):
        table.add_column(column)
    for key in list_keys(_engine(config), include_revoked=revoked):
        table.add_row(
            key.id,
            key.prefix,
            key.role,
            key.name,
            key.created_at.isoformat(timespec="seconds"),
            key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "",
        )
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key's id or prefix.")],
    config: ConfigOption = None,
) -> None:
    """Revoke an API key; requests with it are refused from now on."""
    from accord.api.keys import revoke_key

    try:
        revoked = revoke_key(_engine(config), key, actor="cli")
    except InvalidInput as exc:
        typer.echo(f"accord keys revoke: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"revoked {revoked.id} (prefix {revoked.prefix}, role {revoked.role})")


@app.command()
def demo(
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    chaos: Annotated[
        bool, typer.Option("--chaos", help="Kill and restart the worker; vendors inject faults.")
    ] = False,
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the demo keeps its store (replaced each run).")
    ] = Path("accord-demo"),
) -> None:
    """Run the consulting firm's month end to end, from won deals to cash, and summarise it."""
    from accord.q2c.demo import render_summary, run_demo

    summary = run_demo(chaos=chaos, workdir=directory)
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    else:
        typer.echo(render_summary(summary))


@app.command()
def trace(
    ident: Annotated[
        str, typer.Argument(metavar="ID", help="Trace id, opportunity id or invoice number.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOption = None,
    database: Annotated[
        Path | None, typer.Option("--db", help="A store file (e.g. accord-demo/accord.db).")
    ] = None,
) -> None:
    """The timeline of one deal: deal, project, time, invoice, ERP posting, payment."""
    from accord.q2c.trace import build_trace, render_trace

    if database is not None:
        from accord.store import make_engine, upgrade

        engine = make_engine(f"sqlite:///{database.resolve()}")
        upgrade(engine)
    else:
        engine = _engine(config)
    try:
        doc = build_trace(engine, ident)
    except InvalidInput as exc:
        typer.echo(f"accord trace: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    if as_json:
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")
    else:
        typer.echo(render_trace(doc))


sandbox_app = typer.Typer(
    help="Stand-ins of the vendor APIs, for offline rehearsal.", no_args_is_help=True
)
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.command("serve")
def sandbox_serve(
    vendor: Annotated[
        str, typer.Argument(help="stripe, harvest, salesforce, netsuite or recorder.")
    ],
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0: any free).")] = 0,
    error_rate: Annotated[float, typer.Option(help="Share of requests answered 5xx.")] = 0.0,
    throttle_rate: Annotated[float, typer.Option(help="Share answered 429.")] = 0.0,
    lost_response_rate: Annotated[
        float, typer.Option(help="Share of writes applied but left unanswered.")
    ] = 0.0,
) -> None:
    """Serve a vendor stand-in on loopback until Ctrl-C, with optional faults."""
    from accord.sandbox.recorder import Faults, RecorderServer

    faults = Faults(
        error_rate=error_rate, throttle_rate=throttle_rate, lost_response_rate=lost_response_rate
    )
    server: Any
    if vendor == "stripe":
        from accord.sandbox.stripe import StripeStandIn

        server = StripeStandIn(port=port, faults=faults)
    elif vendor == "harvest":
        from accord.sandbox.harvest import HarvestStandIn

        server = HarvestStandIn(faults=faults)
    elif vendor == "salesforce":
        from accord.sandbox.salesforce import SalesforceStandIn

        server = SalesforceStandIn(faults=faults)
    elif vendor == "netsuite":
        from accord.sandbox.netsuite import NetSuiteStandIn

        server = NetSuiteStandIn(port=port, faults=faults)
    elif vendor == "recorder":
        server = RecorderServer(port=port, faults=faults)
    else:
        typer.echo(
            f"accord sandbox serve: unknown vendor {vendor!r} "
            "(stripe, harvest, salesforce, netsuite, recorder)",
            err=True,
        )
        raise typer.Exit(2)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    typer.echo(f"{vendor} stand-in on {server.url} (Ctrl-C to stop)")
    try:
        stop.wait()
    finally:
        server.stop()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
