"""Connector calls against the vendor's lower bound, counted at the stand-ins.

Pushes a batch of work through real connectors to their stand-ins (in this
process, over loopback HTTP) and counts, at the stand-in, every request that
arrived, beside the fewest calls the vendor's API allows for that work:

- **Stripe**: N invoices of one line each. Stripe API 2023-08-16 creates an
  invoice without lines (``POST /v1/invoices`` takes no line items; checked
  against ``shared/specs/stripe/spec3.yaml`` when present), so a line is an
  invoice item (one call), the invoice takes in the pending items (one call)
  and is finalised (one call): 3 per invoice. ``auto_advance`` would save the
  finalise call but leaves the invoice a draft for about an hour.
- **NetSuite**: N invoices. The REST record service has no multi-record write:
  1 call per invoice (``PUT /record/v1/invoice/eid:…``).
- **Salesforce**: N account updates. sObject collections take 200 records a
  call: ⌈N/200⌉ calls.

Each runs twice: without faults, and with faults on (5 % of requests answered
5xx, 2 % of writes applied and their response lost), where the figure that
matters besides the calls is duplicates at the vendor, which must be zero.
Time is simulated: the quota governor (at each vendor's published limits), the
retry backoff and the stand-ins' clocks all run on one virtual clock, so the
"simulated s" column is how long the work would take against the vendor's
limits, not how long this machine took. Effects go through the effect
executor with an in-memory ledger, as the runtime's pipeline does (batches
through ``perform_many``; a failed batch one by one, looking each up first).

    .venv/bin/python bench/bench_connector_calls.py            # 1,000 of each
    .venv/bin/python bench/bench_connector_calls.py --quick    # 200 of each
    .venv/bin/python bench/bench_connector_calls.py --json
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from accord.connectors.base import ConnectorVendor, WriteRequest
from accord.connectors.governor import DEFAULT_QUOTAS, MemoryGovernor
from accord.connectors.netsuite import NetSuiteConnector
from accord.connectors.netsuite import mapping as netsuite_mapping
from accord.connectors.salesforce import SalesforceConnector
from accord.connectors.salesforce import mapping as salesforce_mapping
from accord.connectors.stripe import StripeConnector
from accord.errors import AccordError
from accord.runtime.effects import Effect, EffectExecutor, EffectOutcome, MemoryLedger, effect_key
from accord.runtime.retry import RetryPolicy
from accord.sandbox.netsuite import NetSuiteStandIn
from accord.sandbox.recorder import Faults
from accord.sandbox.salesforce import SalesforceStandIn
from accord.sandbox.stripe import StripeStandIn

SPEC = Path(__file__).resolve().parents[1].parent / "shared" / "specs" / "stripe" / "spec3.yaml"
EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z
FAULTS = Faults(error_rate=0.05, lost_response_rate=0.02)
POLICY = RetryPolicy(initial_interval=0.5, maximum_interval=30.0, maximum_attempts=10)


class VirtualClock:
    """One simulated clock for the governor, the retries and the stand-ins."""

    def __init__(self) -> None:
        self.now = EPOCH

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)

    def moment(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


@dataclass(frozen=True, slots=True)
class Result:
    vendor: str
    work: str
    faults: bool
    calls: int
    lower_bound: int
    ratio: float
    duplicates: int
    missing: int
    errors_injected: int
    lost_injected: int
    simulated_s: float
    wall_s: float


class _Counting:
    """ASGI layer counting what reaches the Stripe stand-in, which counts no requests itself:
    requests, 5xx answers, and answers marked to be dropped (lost responses)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.counts: Counter[str] = Counter()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        self.counts["requests"] += 1

        async def observe(message: Any) -> None:
            if message["type"] == "http.response.start":
                if message["status"] >= 500:
                    self.counts["errors"] += 1
                names = {name for name, _ in message.get("headers", ())}
                if b"x-accord-standin-drop" in names:
                    self.counts["lost"] += 1
            await send(message)

        return await self.app(scope, receive, observe)


def _executor(system: str, connector: Any, clock: VirtualClock) -> EffectExecutor:
    return EffectExecutor(MemoryLedger(), {system: ConnectorVendor(connector)}, POLICY, clock.sleep)


def _governor(clock: VirtualClock) -> MemoryGovernor:
    return MemoryGovernor(DEFAULT_QUOTAS, clock=clock, sleep=clock.sleep)


@contextmanager
def _timed() -> Iterator[Callable[[], float]]:
    started = time.perf_counter()
    yield lambda: time.perf_counter() - started


# -- Stripe --------------------------------------------------------------------------------


@functools.cache
def stripe_calls_per_invoice(lines: int) -> tuple[int, str]:
    """The fewest Stripe calls that issue one invoice of ``lines`` lines, and why."""
    if not SPEC.exists():
        return lines + 2, "assumed (Stripe's description not found): items + invoice + finalize"
    import yaml

    spec = yaml.load(SPEC.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    create = spec["paths"]["/v1/invoices"]["post"]["requestBody"]["content"]
    params = create["application/x-www-form-urlencoded"]["schema"]["properties"]
    takes_lines = any(name in params for name in ("lines", "invoice_items", "items"))
    add_lines = "/v1/invoices/{invoice}/add_lines" in spec["paths"]
    per_invoice = 1 + 1  # create, finalize
    if not takes_lines and not add_lines:
        per_invoice += lines  # one POST /v1/invoiceitems per line
        why = (
            "POST /v1/invoices takes no lines and there is no add_lines: items + invoice + finalize"
        )
    else:
        why = "lines can go with the invoice"
    return per_invoice, why


def run_stripe(count: int, faults: bool) -> Result:
    clock = VirtualClock()
    key = "sk_test_bench"
    stand_in = StripeStandIn(api_key=key, clock=clock, rate_limit=None, seed=11)
    counting = _Counting(stand_in.app)
    stand_in.app = counting  # served as is by start()
    stand_in.start()
    connector = StripeConnector(
        base_url=stand_in.url, credentials={"api_key": key}, governor=_governor(clock)
    )
    try:
        customers = []
        for n in range(max(1, count // 10)):
            request = WriteRequest(
                "customer",
                "create",
                {"id": f"acct-{n}", "legal_name": f"Client {n}"},
                effect_key("stripe", "create_customer", f"acct-{n}"),
            )
            customers.append(connector.write(request).external_id)
        per_invoice, _ = stripe_calls_per_invoice(1)
        counting.counts.clear()
        start = clock.now
        if faults:
            stand_in.faults = FAULTS
        executor = _executor("stripe", connector, clock)
        with _timed() as elapsed:
            for n in range(count):
                customer = customers[n % len(customers)]
                line = {
                    "id": f"line-{n}",
                    "customer": customer,
                    "amount": 150_000,
                    "currency": "EUR",
                }
                executor.execute(
                    Effect(
                        "stripe",
                        "create_invoiceitem",
                        effect_key("stripe", "create_invoiceitem", f"line-{n}"),
                        {"object": "invoiceitem", "operation": "create", "data": line},
                    )
                )
                invoice = {"id": f"inv-{n}", "customer": customer, "currency": "EUR"}
                executor.execute(
                    Effect(
                        "stripe",
                        "issue_invoice",
                        effect_key("stripe", "issue_invoice", f"inv-{n}"),
                        {"object": "invoice", "operation": "create", "data": invoice},
                    )
                )
            wall = elapsed()
        stand_in.faults = Faults()
        invoices = stand_in.objects("invoice")
        by_id = Counter(str(i["metadata"].get("accord_id")) for i in invoices)
        items = Counter(
            str(i["metadata"].get("accord_id")) for i in stand_in.objects("invoiceitem")
        )
        wanted_invoices = {f"inv-{n}" for n in range(count)}
        wanted_items = {f"line-{n}" for n in range(count)}
        duplicates = sum(c - 1 for c in by_id.values()) + sum(c - 1 for c in items.values())
        missing = len(wanted_invoices - set(by_id)) + len(wanted_items - set(items))
        unfinished = sum(
            1 for i in invoices if i["status"] != "open" or len(i["lines"]["data"]) != 1
        )
        events = Counter(e["type"] for e in stand_in.events())
        calls = counting.counts["requests"]
        bound = per_invoice * count
        return Result(
            "stripe",
            f"{count} invoices (1 line)",
            faults,
            calls,
            bound,
            calls / bound,
            duplicates + max(0, events["invoice.finalized"] - count),
            missing + unfinished,
            counting.counts["errors"],
            counting.counts["lost"],
            clock.now - start,
            wall,
        )
    finally:
        connector.close()
        stand_in.stop()


# -- NetSuite ------------------------------------------------------------------------------


def run_netsuite(count: int, faults: bool) -> Result:
    clock = VirtualClock()
    stand_in = NetSuiteStandIn(clock=clock.moment, seed=11).start()
    connector = NetSuiteConnector(
        base_url=stand_in.url,
        credentials=stand_in.credentials,
        governor=_governor(clock),
        clock=clock,
    )
    try:
        customers = stand_in.seed_customers(max(1, count // 10))
        before = stand_in.counters.get("requests", 0)
        start = clock.now
        if faults:
            stand_in.faults = FAULTS
        executor = _executor("netsuite", connector, clock)
        with _timed() as elapsed:
            for n in range(count):
                body = netsuite_mapping.invoice_from_canonical(
                    {
                        "id": f"inv-{n}",
                        "currency": "EUR",
                        "number": f"INV-{n:05d}",
                        "lines": [
                            {
                                "description": "Consulting",
                                "quantity": Decimal("7.5"),
                                "unit_price": 20_000,
                                "amount": 150_000,
                            }
                        ],
                    },
                    customer_id=customers[n % len(customers)],
                    item_id="1",
                )
                executor.execute(
                    Effect(
                        "netsuite",
                        "issue_invoice",
                        effect_key("netsuite", "issue_invoice", f"inv-{n}"),
                        {
                            "object": "invoice",
                            "operation": "upsert",
                            "data": body,
                            "external_id": f"inv-{n}",
                        },
                    )
                )
            wall = elapsed()
        stand_in.faults = Faults()
        counters = stand_in.counters
        by_eid = Counter(str(r["externalId"]) for r in stand_in.records("invoice"))
        wanted = {f"inv-{n}" for n in range(count)}
        calls = counters.get("requests", 0) - before
        return Result(
            "netsuite",
            f"{count} invoices",
            faults,
            calls,
            count,
            calls / count,
            sum(c - 1 for c in by_eid.values()),
            len(wanted - set(by_eid)),
            counters.get("errors", 0),
            counters.get("lost", 0),
            clock.now - start,
            wall,
        )
    finally:
        connector.close()
        stand_in.stop()


# -- Salesforce ----------------------------------------------------------------------------


def _salesforce_batches(
    vendor: ConnectorVendor, executor: EffectExecutor, ledger: MemoryLedger, batch: Sequence[Effect]
) -> None:
    """What the pipeline does with untried effects of a batch vendor, on an in-memory ledger."""
    from accord.runtime.effects import request_digest

    for start in range(0, len(batch), vendor.batch_size):
        chunk = list(batch[start : start + vendor.batch_size])
        for effect in chunk:
            ledger.intend(effect, request_digest(effect.request))
            ledger.attempt(effect.key)
        try:
            results: list[EffectOutcome | AccordError] = vendor.perform_many(chunk)
        except AccordError:
            results = [AccordError("batch failed")] * len(chunk)
        for effect, result in zip(chunk, results, strict=True):
            if isinstance(result, EffectOutcome):
                ledger.complete(effect.key, result)
            else:
                executor.execute(effect)  # attempted: looked up first, then sent alone


def run_salesforce(count: int, faults: bool) -> Result:
    clock = VirtualClock()
    token = "00D-bench"
    stand_in = SalesforceStandIn(token=token, clock=clock.moment, seed=11).start()
    connector = SalesforceConnector(
        base_url=stand_in.url, credentials={"access_token": token}, governor=_governor(clock)
    )
    try:
        stand_in.seed_accounts(count)
        before = stand_in.counters.get("requests", 0)
        start = clock.now
        if faults:
            stand_in.faults = FAULTS
        vendor = ConnectorVendor(connector)
        ledger = MemoryLedger()
        executor = EffectExecutor(ledger, {"salesforce": vendor}, POLICY, clock.sleep)
        writeback = salesforce_mapping.erp_writeback("C-0001", "credit_hold")
        effects = [
            Effect(
                "salesforce",
                "erp_writeback",
                effect_key("salesforce", "erp_writeback", f"acc-{n}"),
                {
                    "object": "Account",
                    "operation": "upsert",
                    "data": writeback,
                    "external_id": f"acc-{n}",
                },
            )
            for n in range(1, count + 1)
        ]
        with _timed() as elapsed:
            _salesforce_batches(vendor, executor, ledger, effects)
            wall = elapsed()
        stand_in.faults = Faults()
        counters = stand_in.counters
        rows = stand_in.records("Account")
        calls = counters.get("requests", 0) - before
        bound = math.ceil(count / connector.batch_size)
        updated = sum(1 for row in rows if row["ERP_Status__c"] == "credit_hold")
        return Result(
            "salesforce",
            f"{count} account updates",
            faults,
            calls,
            bound,
            calls / bound,
            len(rows) - count,
            count - updated,
            counters.get("errors", 0),
            counters.get("lost", 0),
            clock.now - start,
            wall,
        )
    finally:
        connector.close()
        stand_in.stop()


# -- report --------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=1000, help="invoices / updates per vendor")
    parser.add_argument("--quick", action="store_true", help="200 of each instead of 1,000")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = parser.parse_args(argv)
    count = 200 if args.quick else args.count
    results = [
        run(count, faults)
        for run in (run_stripe, run_netsuite, run_salesforce)
        for faults in (False, True)
    ]
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
        return 0
    _, why = stripe_calls_per_invoice(1)
    print(f"Connector calls vs the vendor's lower bound ({count} of each; counted at the stand-in)")
    print(f"Stripe lower bound per invoice: {why}")
    print(f"Faults on: {FAULTS.error_rate:.0%} 5xx, {FAULTS.lost_response_rate:.0%} lost responses")
    header = (
        f"{'vendor':<11}{'work':<26}{'faults':<8}{'calls':>7}{'bound':>7}{'ratio':>7}"
        f"{'5xx':>5}{'lost':>6}{'dupes':>7}{'missing':>9}{'simulated s':>13}{'wall s':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.vendor:<11}{r.work:<26}{'on' if r.faults else 'off':<8}{r.calls:>7}"
            f"{r.lower_bound:>7}{r.ratio:>7.2f}{r.errors_injected:>5}{r.lost_injected:>6}"
            f"{r.duplicates:>7}{r.missing:>9}"
            f"{r.simulated_s:>13.1f}{r.wall_s:>8.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
