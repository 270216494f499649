"""``accord reconcile``: configured pairs, or two export files.

    accord reconcile [--pair NAME] [--json] [--no-heal]
    accord reconcile files LEFT RIGHT --key COLUMN [--compare COL,COL] [--json] [--store]
    accord reconcile leakage [--days N] [--as-of DATE] [--json]

Exit status: 0 when the sides agree, 1 when discrepancies were found, 2 for
bad input (a malformed file names file, line and column).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from accord.errors import InvalidInput

__all__ = ["reconcile_app"]

reconcile_app = typer.Typer(
    help="Find and heal drift between systems, or between two export files.",
    invoke_without_command=True,
    add_completion=False,
)


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"accord reconcile: {exc}", err=True)
    return typer.Exit(2)


def _print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")


def _summary(console: Console, title: str, doc: dict[str, Any], limit: int = 50) -> None:
    rows = doc["rows"]
    console.print(
        f"[bold]{title}[/]: {doc['left']} ({rows['left']} records) ⇄ "
        f"{doc['right']} ({rows['right']} records)"
    )
    counts = doc["counts"]
    console.print("  " + "  ".join(f"{name} {count}" for name, count in counts.items()))
    if not doc["totals"]["agree"]:
        console.print(f"  totals disagree in {len(doc['totals']['mismatches'])} group(s)")
    if not doc["discrepancies"]:
        console.print("  [green]no discrepancies[/]")
        return
    table = Table("key", "class", "field", "left", "right", "state")
    for item in doc["discrepancies"][:limit]:
        table.add_row(
            str(item["key"]),
            item["class"],
            item.get("field") or "",
            json.dumps(item["left"], default=str),
            json.dumps(item["right"], default=str),
            item.get("state", ""),
        )
    console.print(table)
    if len(doc["discrepancies"]) > limit:
        console.print(f"  … {len(doc['discrepancies']) - limit} more (use --json for all)")


@reconcile_app.callback()
def reconcile(
    ctx: typer.Context,
    pair: Annotated[
        list[str] | None, typer.Option("--pair", help="A configured pair (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as JSON.")] = False,
    heal: Annotated[
        bool, typer.Option("--heal/--no-heal", help="Apply auto fixes and raise exceptions.")
    ] = True,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="accord.yaml (default: ACCORD_CONFIG or ./accord.yaml)."
        ),
    ] = None,
) -> None:
    """Reconcile the configured pairs (reconcile.sources in accord.yaml), store and heal."""
    if ctx.invoked_subcommand is not None:
        return
    from accord.bootstrap import build_hub
    from accord.config import load_settings
    from accord.reconcile.schedule import run_configured

    try:
        settings = load_settings(config)
        hub = build_hub(settings)
    except InvalidInput as exc:
        raise _fail(exc) from None
    try:
        reports = run_configured(
            settings,
            policy=hub.pipeline.policy,
            engine=hub.engine,
            executor=hub.pipeline.executor,
            pairs=pair,
            heal=heal,
        )
    except InvalidInput as exc:
        raise _fail(exc) from None
    finally:
        hub.stop()
    docs = [report.to_json() for report in reports]
    if as_json:
        _print_json({"runs": docs})
    else:
        console = Console()
        for doc in docs:
            _summary(console, f"{doc['pair']} (run {doc['run_id']})", doc)
    if any(doc["discrepancies"] or not doc["totals"]["agree"] for doc in docs):
        raise typer.Exit(1)


@reconcile_app.command("files")
def files(
    left: Annotated[Path, typer.Argument(help="The export that should be complete.")],
    right: Annotated[Path, typer.Argument(help="The export checked against it.")],
    key: Annotated[str, typer.Option("--key", help="The column that identifies a record.")],
    compare: Annotated[
        str | None,
        typer.Option(
            "--compare",
            help="Columns to compare, e.g. amount:money,status (default: all shared columns).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    store: Annotated[
        bool, typer.Option("--store", help="Also store the run in Accord's database.")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="accord.yaml (with --store)."),
    ] = None,
) -> None:
    """Compare two CSV or JSON-lines exports by KEY; money columns compare as decimals."""
    from accord.reconcile.files import compare_files, parse_compare

    try:
        columns = parse_compare(compare) if compare is not None else None
        comparison = compare_files(left, right, key, columns)
    except InvalidInput as exc:
        raise _fail(exc) from None
    doc = comparison.to_json()
    if store:
        from accord.config import load_settings
        from accord.reconcile.run import store_comparison
        from accord.store import make_engine, upgrade

        try:
            engine = make_engine(load_settings(config).database_url)
        except InvalidInput as exc:
            raise _fail(exc) from None
        try:
            upgrade(engine)
            doc["run_id"] = store_comparison(engine, comparison)
        finally:
            engine.dispose()
    if as_json:
        _print_json(doc)
    else:
        _summary(Console(), "files", doc)
    if not comparison.clean:
        raise typer.Exit(1)


@reconcile_app.command("leakage")
def leakage_report(
    days: Annotated[
        int, typer.Option("--days", min=0, help="Unbilled after this many days is leakage.")
    ] = 30,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="The day judged (YYYY-MM-DD; default today).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="accord.yaml (default: ACCORD_CONFIG or ./accord.yaml)."
        ),
    ] = None,
) -> None:
    """Approved billable work not invoiced after N days, and write-offs without a reason.

    Reads the billable_work sources of accord.yaml: left the approved work,
    right the invoice lines (keyed by the work they bill).
    """
    from datetime import UTC, date, datetime

    from accord.config import load_settings
    from accord.reconcile.leakage import invoiced_keys, leakage, work_from
    from accord.reconcile.schedule import side_from
    from accord.store import make_engine

    try:
        day = date.fromisoformat(as_of) if as_of else datetime.now(UTC).date()
    except ValueError:
        raise _fail(InvalidInput(f"not a date: {as_of!r}", field="--as-of")) from None
    try:
        settings = load_settings(config)
        sources = settings.reconcile.sources.get("billable_work")
        if sources is None:
            raise InvalidInput(
                "configure reconcile.sources.billable_work (left: approved work, "
                "right: invoice lines) in accord.yaml",
                record="reconcile.sources",
                field="billable_work",
            )
        needs_db = sources.left.table is not None or sources.right.table is not None
        engine = make_engine(settings.database_url) if needs_db else None
        try:
            report = leakage(
                work_from(side_from(sources.left, engine)),
                invoiced=invoiced_keys(side_from(sources.right, engine)),
                as_of=day,
                days=days,
            )
        finally:
            if engine is not None:
                engine.dispose()
    except InvalidInput as exc:
        raise _fail(exc) from None
    doc = report.to_json()
    if as_json:
        _print_json(doc)
        return
    console = Console()
    console.print(f"[bold]revenue leakage[/] as of {doc['as_of']} (unbilled after {days} days)")
    for title, part in (
        ("unbilled work", doc["unbilled"]),
        ("write-offs without a reason code", doc["write_offs_without_reason"]),
    ):
        value = ", ".join(
            f"{_major(v, c)} {c} ({part['share'][c]})" for c, v in sorted(part["value"].items())
        )
        console.print(f"  {title}: {len(part['items'])} item(s) {value}")
        if part["items"]:
            table = Table("key", "account", "amount", "approved", "age (days)")
            for item in part["items"]:
                table.add_row(
                    item["key"],
                    item["account_id"],
                    f"{_major(item['amount'], item['currency'])} {item['currency']}",
                    item["approved_on"],
                    str(item["age_days"]),
                )
            console.print(table)


def _major(minor: int, currency: str) -> str:
    from decimal import Decimal

    from accord.domain.money import currency_digits

    return str(Decimal(minor).scaleb(-currency_digits(currency)))
