"""``accord demo``: the consulting firm's month, from won deals to cash, end to end.

The demo starts the vendor stand-ins (Salesforce, Harvest, Stripe, NetSuite) on
loopback, seeds them from ``examples/consulting-month.yaml``, and runs the hub
on the embedded default (one SQLite file and DBOS's SQLite log, in a temporary
directory). Then, in order:

1. sales has closed four deals in Salesforce (one for an account entered twice);
2. the hub runs the deal-won workflows — three customers mastered in the ERP,
   projects provisioned in Harvest, billing schedules set, ids written back to
   Salesforce; the fourth deal is held as a ``possible_duplicate``;
3. consultants log the month's time and expenses in Harvest and approve them,
   and a milestone is accepted;
4. the Kraftwerk contract is amended (a new senior rate from 16 March);
5. the month-end billing run issues the invoices in Stripe and posts them to
   NetSuite — while Stripe is down for a moment (the outage is survived);
6. customers pay in Stripe; the hub applies the payments in NetSuite, with the
   realised FX difference of the euro invoice, and updates Salesforce;
7. one credit memo goes to Stripe and NetSuite.

The summary counts what each system holds, the exceptions, dead letters and
effects (and duplicates, counted at the stand-ins), reconciles the systems with
the reconciliation engine (accounts, projects, invoices, payments and credit
memos, each pair read through the vendors' connectors and stored as a run),
and times deal-won to project-provisioned. ``--chaos`` runs the same month with the hub's worker
process killed and restarted at random points while the stand-ins inject
errors, 429s, delays and lost responses.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from accord.billing.model import BillingWorld
from accord.connectors.base import ConnectorVendor
from accord.connectors.governor import (
    DEFAULT_QUOTAS,
    BreakerState,
    CircuitBreaker,
    DbGovernor,
)
from accord.connectors.harvest.connector import HarvestConnector
from accord.connectors.netsuite.connector import NetSuiteConnector
from accord.connectors.salesforce.connector import SalesforceConnector
from accord.connectors.stripe.connector import StripeConnector
from accord.domain.money import Money
from accord.ownership import OwnershipPolicy, parse_policy
from accord.q2c import context as c
from accord.q2c.context import Q2C
from accord.q2c.erp import ErpVendor
from accord.q2c.scenario import seed
from accord.q2c.scenario.seed import Facts
from accord.runtime.effects import EffectExecutor, Vendor
from accord.runtime.pipeline import SqlLedger
from accord.runtime.retry import RetryPolicy
from accord.sandbox.recorder import Faults

__all__ = [
    "Endpoints",
    "StandIns",
    "open_context",
    "run_demo",
    "run_hub_phase",
    "run_month",
    "seed_scenario",
]

PHASES = ("deals", "work", "amend", "bill", "pay", "payments", "credit")
DEMO_FILES = ("accord.db", "accord-workflows.db", "endpoints.json")
"""What a demo writes in its directory (and removes there before it starts again)."""
HUB_PHASES = frozenset({"deals", "amend", "bill", "payments", "credit"})
SALESFORCE_TOKEN = "sandbox-token"
HARVEST_TOKEN = "sandbox-token"
HARVEST_ACCOUNT = "1234567"
STRIPE_KEY = "sk_test_accord_demo"
CHAOS_FAULTS = Faults(
    error_rate=0.05, throttle_rate=0.05, retry_after=0.05, lost_response_rate=0.05, latency=0.002
)


@dataclass
class Endpoints:
    """Where a hub process finds the stand-ins and its store (written to a file for workers)."""

    database_url: str
    salesforce: str
    harvest: str
    stripe: str
    netsuite: str
    netsuite_credentials: dict[str, str]
    subsidiaries: dict[str, str] = field(default_factory=dict)

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=2))

    @classmethod
    def load(cls, path: Path) -> Endpoints:
        return cls(**json.loads(path.read_text()))


class StandIns:
    """The four vendor stand-ins, in this process, with faults switchable at any time."""

    def __init__(self, seed_value: int = 7) -> None:
        from accord.sandbox.harvest import HarvestStandIn
        from accord.sandbox.netsuite import NetSuiteStandIn
        from accord.sandbox.salesforce import SalesforceStandIn
        from accord.sandbox.stripe import StripeStandIn

        self.salesforce = SalesforceStandIn(token=SALESFORCE_TOKEN, seed=seed_value)
        self.harvest = HarvestStandIn(
            token=HARVEST_TOKEN, account_id=HARVEST_ACCOUNT, seed=seed_value, rate_limit=1000
        )
        self.stripe = StripeStandIn(api_key=STRIPE_KEY, seed=seed_value, rate_limit=None)
        self.netsuite = NetSuiteStandIn(seed=seed_value)

    def start(self) -> StandIns:
        for server in (self.salesforce, self.harvest, self.stripe, self.netsuite):
            server.start()
        return self

    def stop(self) -> None:
        for server in (self.salesforce, self.harvest, self.stripe, self.netsuite):
            with contextlib.suppress(Exception):
                server.stop()

    def set_faults(self, faults: Faults) -> None:
        for server in (self.salesforce, self.harvest, self.stripe, self.netsuite):
            server.faults = faults


def seed_back_office(si: StandIns, facts: Facts) -> dict[str, str]:
    """What the back office holds before the month: PSA setup, ERP entities and customers.

    Returns the ERP subsidiary of each legal entity.
    """
    seed.seed_psa_reference(si.harvest, facts)
    uk = si.netsuite.create(
        "subsidiary", {"name": "Consulting UK Ltd", "country": "GB", "currency": {"id": "2"}}
    )
    for customer in facts.erp_customers:
        si.netsuite.create(
            "customer",
            {
                "companyName": customer.legal_name,
                "subsidiary": {"id": str(uk["id"])},
                "url": f"https://{customer.domain}" if customer.domain else None,
                "isPerson": False,
            },
            external_id=f"legacy-{customer.id}",
        )
    return {"us": "1", "uk": str(uk["id"])}


def seed_scenario(si: StandIns, facts: Facts | None = None) -> dict[str, str]:
    """Seed the consulting firm into running stand-ins: the back office (PSA people and
    tasks, ERP entities and the pre-existing customer) and the CRM's won deals. A hub
    pointed at them then runs the month (:func:`run_hub_phase`). Returns the ERP
    subsidiary of each legal entity, for :class:`Endpoints`."""
    facts = facts or seed.default_facts()
    subsidiaries = seed_back_office(si, facts)
    seed.seed_crm(si.salesforce, facts)
    return subsidiaries


BREAKER = CircuitBreaker(failure_threshold=5, cool_down=0.5, probe_timeout=5.0)
"""The demo's circuit breaker: five failures in a row open it for half a second."""


def governor_for(database_url: str) -> DbGovernor:
    """The quota governor every connector of every worker process shares, in the store:
    each vendor's published limits (``DEFAULT_QUOTAS``) and the circuit breaker."""
    from accord.store import make_engine, upgrade

    engine = make_engine(database_url)
    upgrade(engine)
    return DbGovernor(engine, DEFAULT_QUOTAS, breaker=BREAKER)


def open_context(
    endpoints: Endpoints, world: BillingWorld, facts: Facts, *, executor_id: str = "demo"
) -> tuple[Any, Q2C]:
    """Launch the hub (store, migrations, DBOS) and bind the quote-to-cash context."""
    from accord.bootstrap import build_hub
    from accord.config import Settings

    governor = governor_for(endpoints.database_url)
    crm = SalesforceConnector(
        endpoints.salesforce, {"access_token": SALESFORCE_TOKEN}, governor=governor
    )
    psa = HarvestConnector(
        endpoints.harvest,
        {"access_token": HARVEST_TOKEN, "account_id": HARVEST_ACCOUNT},
        governor=governor,
    )
    stripe = StripeConnector(endpoints.stripe, {"api_key": STRIPE_KEY}, governor=governor)
    erp = NetSuiteConnector(
        endpoints.netsuite, dict(endpoints.netsuite_credentials), governor=governor
    )
    vendors: dict[str, Vendor] = {
        c.CRM: ConnectorVendor(crm),
        c.PSA: ConnectorVendor(psa),
        c.PAYMENTS: ConnectorVendor(stripe),
        c.ERP: ErpVendor(erp),
    }
    settings = Settings(database_url=endpoints.database_url)
    hub = build_hub(settings, vendors=vendors, routes=[], executor_id=executor_id)
    hub.start(dispatch=False)
    retry = RetryPolicy(initial_interval=0.05, maximum_interval=2.0, maximum_attempts=8)
    executor = EffectExecutor(SqlLedger(hub.engine), vendors, retry)
    ctx = Q2C(
        engine=hub.engine,
        executor=executor,
        crm=crm,
        psa=psa,
        payments=stripe,
        world=world,
        facts=facts,
        erp_connector=erp,
        erp=c.ErpSettings(subsidiaries=dict(endpoints.subsidiaries)),
    )
    c.bind(ctx)
    return hub, ctx


def run_hub_phase(ctx: Q2C, phase: str) -> Any:
    """One phase of the hub's work; every phase is idempotent (workflow ids, effect keys)."""
    from accord.q2c import billing, deal_won, payments
    from accord.q2c.amendment import record_amendment

    facts: Facts = ctx.facts
    if phase == "deals":
        return deal_won.sync_won_deals(ctx)
    if phase == "amend":
        a = facts.amendment
        return record_amendment(
            ctx, a.contract, rate_card=a.rate_card, role=a.role, rate=a.rate, effective=a.effective
        )
    if phase == "bill":
        return billing.run_period(ctx.world.period_end)
    if phase == "payments":
        return payments.sync_payments(ctx)
    if phase == "credit":
        memo = facts.credit_memo
        iid = billing.invoice_id(str(memo["contract"]), ctx.world.period_end)
        return payments.issue_credit_memo(iid, str(memo["kind"]), str(memo["reason"]))
    raise ValueError(f"unknown hub phase {phase!r}")


def record_milestones(ctx: Q2C) -> int:
    """The customer's milestone acceptances, as the PSA side reports them to the hub."""
    count = 0
    line_contract = {line.id: k.id for k in ctx.world.contracts for line in k.lines}
    milestone_line = {
        m.id: line.id
        for k in ctx.world.contracts
        for line in k.lines
        for m in getattr(line, "milestones", ())
    }
    for event in ctx.world.milestones:
        if event.status not in ("accepted", "reached"):
            continue
        contract = line_contract.get(milestone_line.get(event.id, ""))
        doc = c.get(ctx, "contract", contract) if contract else None
        if doc is None:
            continue
        if c.get(ctx, "milestone", event.id) is None:
            c.put(
                ctx,
                "milestone",
                event.id,
                {
                    "status": event.status,
                    "date": event.date.isoformat() if event.date else None,
                    "contract_line": milestone_line[event.id],
                },
                system="psa",
                trace_id=c.trace_of(str(doc["opportunity"])),
                action="milestone.accepted",
            )
            count += 1
    return count


# -- the run ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _outage(si: StandIns, ctx: Q2C, seconds: float) -> Iterator[dict[str, Any]]:
    """Stripe answers every request 503 for ``seconds`` from the start of the block;
    ``breaker_opened`` says whether the governor's circuit breaker opened meanwhile."""
    info: dict[str, Any] = {"system": "stripe", "seconds": seconds, "breaker_opened": False}
    before = si.stripe.faults
    si.stripe.faults = Faults(error_rate=1.0)
    governor = ctx.payments.governor

    def lift() -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if isinstance(governor, DbGovernor):
                with contextlib.suppress(Exception):
                    if governor.status("stripe").breaker is not BreakerState.CLOSED:
                        info["breaker_opened"] = True
            time.sleep(0.02)
        si.stripe.faults = before

    thread = threading.Thread(target=lift, daemon=True)
    thread.start()
    try:
        yield info
    finally:
        thread.join()
        si.stripe.faults = before


def run_month(si: StandIns, ctx: Q2C, *, outage_seconds: float = 1.0) -> dict[str, Any]:
    """The month, phase by phase, on a running hub: sales closes the deals, the hub
    provisions them, people log and approve work, the amendment, the billing run
    (through a Stripe outage of ``outage_seconds``), payments and the credit memo.
    Returns what the outage did."""
    outage: dict[str, Any] = {}
    seed.seed_crm(si.salesforce, ctx.facts)  # sales closes the deals
    for phase in PHASES:
        if phase not in HUB_PHASES:
            _outside(si, ctx, phase)
        elif phase == "bill":
            with _outage(si, ctx, outage_seconds) as outage:
                run_hub_phase(ctx, phase)
        else:
            run_hub_phase(ctx, phase)
    return outage


def run_demo(
    *, chaos: bool = False, workdir: Path | None = None, seed_value: int = 7
) -> dict[str, Any]:
    """Run the month end to end and return the summary document."""
    started = time.perf_counter()
    world = seed.pre_amendment_world(seed.load_world(), seed.default_facts().amendment)
    facts = seed.default_facts()
    own_dir = None
    if workdir is None:
        own_dir = tempfile.TemporaryDirectory(prefix="accord-demo-")
        workdir = Path(own_dir.name)
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        for name in DEMO_FILES:
            for suffix in ("", "-wal", "-shm", "-journal"):
                (workdir / f"{name}{suffix}").unlink(missing_ok=True)
    si = StandIns(seed_value).start()
    hub = None
    try:
        subsidiaries = seed_back_office(si, facts)
        endpoints = Endpoints(
            database_url=f"sqlite:///{workdir / 'accord.db'}",
            salesforce=si.salesforce.url,
            harvest=si.harvest.url,
            stripe=si.stripe.url,
            netsuite=si.netsuite.url,
            netsuite_credentials=si.netsuite.credentials,
            subsidiaries=subsidiaries,
        )
        chaos_report: dict[str, Any] = {}
        outage: dict[str, Any] = {}
        if chaos:
            chaos_report = _run_chaos(si, endpoints, workdir, world, facts, seed_value)
            hub, ctx = open_context(endpoints, world, facts, executor_id="demo-summary")
            outage = chaos_report.pop("outage", {})
        else:
            hub, ctx = open_context(endpoints, world, facts)
            outage = run_month(si, ctx)
        summary = summarise(si, ctx, outage)
        summary["wall_seconds"] = round(time.perf_counter() - started, 2)
        summary["mode"] = "chaos" if chaos else "clean"
        summary["store"] = None if own_dir is not None else endpoints.database_url
        if chaos:
            summary["chaos"] = chaos_report
        return summary
    finally:
        if hub is not None:
            hub.stop()
        si.stop()
        if own_dir is not None:
            own_dir.cleanup()


def _outside(si: StandIns, ctx: Q2C, phase: str) -> None:
    """What people and customers do, between the hub's phases."""
    if phase == "work":
        seed.log_work(si.harvest, ctx.world, ctx.facts)
        record_milestones(ctx)
    elif phase == "pay":
        _retrying(lambda: seed.customers_pay(si.stripe.url, STRIPE_KEY))


def _retrying(action: Any, attempts: int = 20) -> Any:
    for attempt in range(attempts):
        try:
            return action()
        except Exception:  # the outside world retries whatever went wrong
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    return None


# -- chaos --------------------------------------------------------------------------------------


def _run_chaos(
    si: StandIns,
    endpoints: Endpoints,
    workdir: Path,
    world: BillingWorld,
    facts: Facts,
    seed_value: int,
) -> dict[str, Any]:
    """Each hub phase runs in a worker process that is SIGKILLed at random points and
    restarted until it finishes, while the stand-ins inject faults."""
    rng = random.Random(seed_value)
    path = workdir / "endpoints.json"
    endpoints.dump(path)
    kills = 0
    runs = 0
    outage: dict[str, Any] = {}
    seed.seed_crm(si.salesforce, facts)  # sales closes the deals
    for phase in PHASES:
        if phase not in HUB_PHASES:
            si.set_faults(Faults())
            _outside_standalone(si, endpoints, world, facts, phase)
            continue
        si.set_faults(CHAOS_FAULTS)
        attempt = 0
        while True:
            attempt += 1
            runs += 1
            env = {**os.environ, "ACCORD_DBOS_LOG_LEVEL": "CRITICAL"}
            proc = subprocess.Popen(
                [sys.executable, "-m", "accord.q2c.worker", str(path), phase],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            killed = False
            if attempt <= 2 and rng.random() < 0.8:
                time.sleep(rng.uniform(0.2, 1.5))
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    killed = True
                    kills += 1
            if phase == "bill" and attempt == 1 and not outage:
                outage = {"system": "stripe", "seconds": 1.0}
                si.stripe.faults = Faults(error_rate=1.0)
                threading.Timer(1.0, lambda: setattr(si.stripe, "faults", CHAOS_FAULTS)).start()
            try:
                _, err = proc.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            if proc.returncode == 0:
                break
            if not killed and attempt > 6:
                raise RuntimeError(f"phase {phase} keeps failing: {err.decode()[-2000:]}")
    si.set_faults(Faults())
    return {
        "kills": kills,
        "worker_runs": runs,
        "faults": CHAOS_FAULTS.__repr__(),
        "outage": outage,
    }


def _outside_standalone(
    si: StandIns, endpoints: Endpoints, world: BillingWorld, facts: Facts, phase: str
) -> None:
    if phase == "work":
        seed.log_work(si.harvest, world, facts)
        from accord.store import make_engine, upgrade

        engine = make_engine(endpoints.database_url)
        upgrade(engine)
        try:
            ctx = Q2C(
                engine=engine,
                executor=EffectExecutor(SqlLedger(engine), {}),
                crm=None,  # type: ignore[arg-type]
                psa=None,  # type: ignore[arg-type]
                payments=None,  # type: ignore[arg-type]
                world=world,
                facts=facts,
                erp_connector=None,  # type: ignore[arg-type]
            )
            record_milestones(ctx)
        finally:
            engine.dispose()
    elif phase == "pay":
        _retrying(lambda: seed.customers_pay(si.stripe.url, STRIPE_KEY))


# -- the summary --------------------------------------------------------------------------------


def _money_text(minor: int, currency: str) -> str:
    return Money(minor, currency).format()


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summarise(si: StandIns, ctx: Q2C, outage: dict[str, Any]) -> dict[str, Any]:
    from accord.runtime.dlq import dead_letters
    from accord.store import Exceptions, ExceptionState, Records
    from accord.store.tables import effects, records

    with ctx.engine.connect() as conn:
        rows = conn.execute(select(records.c.entity_type, records.c.id, records.c.data)).all()
        by_type: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for entity_type, rid, data in rows:
            by_type.setdefault(entity_type, []).append((rid, data))
        calls = conn.execute(select(func.count()).select_from(effects)).scalar_one()
        attempts = conn.execute(select(func.sum(effects.c.attempts))).scalar_one() or 0
        retried = conn.execute(
            select(func.count()).select_from(effects).where(effects.c.attempts > 1)
        ).scalar_one()
        open_items = Exceptions(conn).list(state=(ExceptionState.OPEN, ExceptionState.ASSIGNED))
        trace_record = Records(conn).get("opportunity", "opp-kw-2026")
    invoices = sorted(by_type.get("invoice", []), key=lambda r: str(r[1]["number"]))
    totals: Counter[str] = Counter()
    for _, inv in invoices:
        totals[inv["currency"]] += int(inv["gross"])
    payments = by_type.get("payment", [])
    paid: Counter[str] = Counter()
    for _, pay in payments:
        paid[pay["currency"]] += int(pay["amount"])
    credits = by_type.get("credit_memo", [])
    roles: Counter[str] = Counter(item.role for item in open_items if item.type != "dead_letter")
    latencies = [
        float(d["latency_seconds"])
        for _, d in by_type.get("opportunity", [])
        if d.get("latency_seconds") is not None
    ]
    systems = _system_counts(si)
    reconciliation = reconcile_month(ctx)
    fx = [d["fx"] for _, d in payments if d.get("fx")]
    return {
        "invoices": {
            "count": len(invoices),
            "totals": {cur: _money_text(v, cur) for cur, v in sorted(totals.items())},
            "items": [
                {
                    "number": inv["number"],
                    "contract": inv["contract"],
                    "currency": inv["currency"],
                    "net": _money_text(int(inv["net"]), inv["currency"]),
                    "tax": _money_text(int(inv["tax"]), inv["currency"]),
                    "gross": _money_text(int(inv["gross"]), inv["currency"]),
                    "status": inv["status"],
                    "lines": [
                        {
                            "contract_line": line["contract_line"],
                            "kind": line["kind"],
                            "amount": _money_text(int(line["amount"]), inv["currency"]),
                            "tax": _money_text(int(line["tax"]), inv["currency"]),
                            "sources": list(line["sources"]),
                        }
                        for line in inv["lines"]
                    ],
                    "stripe_id": inv.get("stripe_id"),
                    "erp_id": inv.get("erp_id"),
                }
                for _, inv in invoices
            ],
        },
        "payments": {
            "count": len(payments),
            "totals": {cur: _money_text(v, cur) for cur, v in sorted(paid.items())},
            "realised_fx": [
                {
                    "currency": f["currency"],
                    "difference": _money_text(int(f["difference"]), f["currency"]),
                    "kind": f["kind"],
                }
                for f in fx
            ],
        },
        "credit_memos": {
            "count": len(credits),
            "totals": {
                d["currency"]: _money_text(int(d["gross"]), d["currency"]) for _, d in credits
            },
        },
        "systems": systems,
        "exceptions": {"open": dict(sorted(roles.items()))},
        "dead_letters": {"count": len(dead_letters(ctx.engine, include_workflows=False))},
        "effects": {
            "calls": int(calls),
            "attempts": int(attempts),
            "retried": int(retried),
            "duplicates": _duplicates(si),
        },
        "reconciliation": reconciliation,
        "outage": {**outage, "survived": bool(outage) and len(invoices) > 0},
        "latency": {
            "deal_won_to_provisioned_p50_seconds": round(statistics.median(latencies), 3)
            if latencies
            else None,
            "deal_won_to_provisioned_p95_seconds": round(_percentile(latencies, 0.95), 3)
            if latencies
            else None,
            "deals": len(latencies),
            "samples_seconds": sorted(latencies),
        },
        "trace_sample": c.trace_of("opp-kw-2026") if trace_record else None,
    }


def _system_counts(si: StandIns) -> dict[str, dict[str, int]]:
    return {
        "salesforce": {o: len(si.salesforce.records(o)) for o in ("Account", "Opportunity")},
        "harvest": {
            k: len(si.harvest.records(k))
            for k in (
                "clients",
                "projects",
                "user_assignments",
                "users",
                "time_entries",
                "expenses",
            )
        },
        "stripe": {
            k: len(si.stripe.objects(k))
            for k in ("customer", "invoiceitem", "invoice", "credit_note", "payment_intent")
        },
        "netsuite": {
            k: len(si.netsuite.records(k))
            for k in ("customer", "job", "invoice", "creditMemo", "customerPayment")
        },
    }


def _duplicates(si: StandIns) -> int:
    """Objects made twice for one effect, counted at the stand-ins by the keys they carry."""
    dupes = 0
    for kind in ("customer", "invoiceitem", "invoice", "credit_note"):
        tags = Counter(
            (o.get("metadata") or {}).get("accord_id")
            or (o.get("metadata") or {}).get("accord_key")
            for o in si.stripe.objects(kind)
        )
        dupes += sum(n - 1 for tag, n in tags.items() if tag and n > 1)
    for kind in ("customer", "job", "invoice", "creditMemo", "customerPayment"):
        tags = Counter(r.get("externalId") for r in si.netsuite.records(kind))
        dupes += sum(n - 1 for tag, n in tags.items() if tag and n > 1)
    for kind, key in (("clients", "name"), ("projects", "code")):
        tags = Counter(r.get(key) for r in si.harvest.records(kind))
        dupes += sum(n - 1 for tag, n in tags.items() if tag and n > 1)
    return dupes


RECONCILED_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("accounts", c.CRM, c.ERP),
    ("projects", c.PSA, c.ERP),
    ("invoices", c.PAYMENTS, c.ERP),
    ("payments", c.PAYMENTS, c.ERP),
    ("credit_memos", c.PAYMENTS, c.ERP),
)
"""The pairs the month is reconciled on: (pair, the owner's system, the checked system).

``billable_work`` (Harvest against Stripe) is not among them: the billing run
bills each contract line as one Stripe item (its sources are on the hub's
invoice, not on the item), and Harvest holds no billable rates, so there is no
per-entry value on either side to compare."""


def demo_policy() -> OwnershipPolicy:
    """The shipped ownership policy, with the roles played by the demo's systems."""
    from importlib import resources

    import yaml

    text = resources.files("accord.ownership").joinpath("default_policy.yaml").read_text("utf-8")
    document = yaml.safe_load(text)
    document["ownership"]["systems"] = {
        "crm": c.CRM,
        "psa": c.PSA,
        "erp": c.ERP,
        "billing": c.PAYMENTS,
    }
    return parse_policy(document, source="default_policy.yaml")


def reconcile_month(ctx: Q2C) -> dict[str, Any]:
    """Every pair of the month, through the reconciliation engine, stored as runs.

    Each side is read through the demo's connectors and keyed through the hub's
    cross-reference; nothing is healed (a demo shows the drift, a person decides),
    so every discrepancy stays open on the run. Returns the total number of
    discrepancies, each run's id and counts, and the discrepancies themselves.
    """
    from accord.reconcile.connect import connector_side
    from accord.reconcile.pairs import pair_named
    from accord.reconcile.run import reconcile_pair

    connectors = {
        c.CRM: ctx.crm,
        c.PSA: ctx.psa,
        c.PAYMENTS: ctx.payments,
        c.ERP: ctx.erp_connector,
    }
    policy = demo_policy()
    runs: dict[str, dict[str, Any]] = {}
    details: list[dict[str, Any]] = []
    for name, left, right in RECONCILED_PAIRS:
        pair = pair_named(name)
        report = reconcile_pair(
            pair,
            connector_side(pair, connectors[left], store=ctx.engine),
            connector_side(pair, connectors[right], store=ctx.engine),
            policy=policy,
            engine=ctx.engine,
            heal=False,
            clock=ctx.clock,
        )
        doc = report.comparison.to_json()
        runs[name] = {"run_id": report.run_id, **report.counts}
        for item in doc["discrepancies"]:
            details.append({"pair": name, **item})
    return {"discrepancies": len(details), "runs": runs, "details": details}


def render_summary(summary: dict[str, Any]) -> str:
    """The summary as a few readable lines."""
    inv = summary["invoices"]
    lines = [
        f"accord demo ({summary['mode']}): {summary['wall_seconds']} s",
        f"invoices: {inv['count']}  " + ", ".join(f"{v} {k}" for k, v in inv["totals"].items()),
    ]
    for item in inv["items"]:
        lines.append(
            f"  {item['number']}: {item['gross']} {item['currency']} ({item['status']}; "
            f"stripe {item['stripe_id']}, netsuite {item['erp_id']})"
        )
    pay = summary["payments"]
    lines.append(
        f"payments: {pay['count']}  " + ", ".join(f"{v} {k}" for k, v in pay["totals"].items())
    )
    for fx in pay["realised_fx"]:
        lines.append(f"  realised FX {fx['kind']}: {fx['difference']} {fx['currency']}")
    lines.append(f"credit memos: {summary['credit_memos']['count']}")
    for system, counts in summary["systems"].items():
        lines.append(f"{system}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    lines.append(f"open exceptions: {summary['exceptions']['open'] or 'none'}")
    lines.append(f"dead letters: {summary['dead_letters']['count']}")
    eff = summary["effects"]
    lines.append(
        f"effects: {eff['calls']} calls, {eff['retried']} retried, {eff['duplicates']} duplicates"
    )
    rec = summary["reconciliation"]
    lines.append(
        f"reconciliation: {rec['discrepancies']} discrepancies ("
        + ", ".join(
            f"{pair} {sum(v for k, v in counts.items() if k != 'run_id')}"
            for pair, counts in rec["runs"].items()
        )
        + ")"
    )
    if summary["outage"].get("system"):
        o = summary["outage"]
        lines.append(
            f"outage: {o['system']} down {o['seconds']} s, "
            + ("survived" if o["survived"] else "NOT survived")
            + (", circuit breaker opened" if o.get("breaker_opened") else "")
        )
    lat = summary["latency"]
    lines.append(
        f"deal won → project provisioned: p50 {lat['deal_won_to_provisioned_p50_seconds']} s, "
        f"p95 {lat['deal_won_to_provisioned_p95_seconds']} s over {lat['deals']} deals"
    )
    if summary.get("chaos"):
        ch = summary["chaos"]
        lines.append(f"chaos: worker killed {ch['kills']} times over {ch['worker_runs']} runs")
    lines.append(
        f"trace: accord trace {summary['trace_sample']}"
        + (f" --db {summary['store'].removeprefix('sqlite:///')}" if summary.get("store") else "")
    )
    return "\n".join(lines)
