"""The ``accord`` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from accord import __version__
from accord.billing.engine import fmt, price_text
from accord.billing.model import BillingRun
from accord.billing.recognition import LineRevenue, recognise_run
from accord.billing.scenario import load_scenario, run_to_json, simulate
from accord.errors import InvalidInput

__all__ = ["app", "main"]

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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
