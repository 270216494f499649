"""Deal won in the CRM → customer in the ERP → project in the PSA → billing schedule → CRM.

One DBOS workflow per won opportunity, its id derived from the opportunity
(``deal-won-<Salesforce Id>``), so the same deal never runs twice however often
the CRM is polled; each step is checkpointed and each write is an effect with a
key derived from canonical ids, so a crash resumes where it stopped and no
write happens twice.

1. **Load** the opportunity and its account from Salesforce.
2. **Customer master**: compare the account with the ERP's customers
   (:mod:`accord.q2c.matching`). A certain match updates that customer; no match
   creates one (upsert by canonical id) with sold-to, bill-to and the
   contracting entity's subsidiary; an uncertain match opens a
   ``possible_duplicate`` exception for sales operations and holds the deal —
   never an automatic merge.
3. **Provision** the PSA: a client and one project per contract line, and the
   ERP project record under the customer.
4. **Billing schedule**: the contract (lines, rate cards) as canonical version 1
   and its monthly schedule.
5. **Write back** the ERP customer id to the CRM account and the PSA project ids
   to the opportunity.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dbos import DBOS, SetWorkflowID

from accord.billing.model import Contract, TimeAndMaterialsLine
from accord.connectors.base import Cursor
from accord.connectors.harvest import mapping as harvest_mapping
from accord.connectors.salesforce.mapping import stamp as sf_stamp
from accord.domain.ids import deterministic_id
from accord.q2c import context as c
from accord.q2c.amendment import rate_card_to_doc
from accord.q2c.erp import erp_customers
from accord.q2c.matching import Candidate, Decision, MatchResult, match_customer
from accord.store import Exceptions

__all__ = ["contract_of", "deal_won", "run_deal", "sync_won_deals", "won_opportunities"]

WON = "Closed Won"


def contract_of(ctx: c.Q2C, accord_id: str | None) -> Contract | None:
    """The contract the deal desk agreed for an opportunity (``opp-<contract id>``)."""
    if not accord_id:
        return None
    wanted = accord_id.removeprefix("opp-")
    return next((k for k in ctx.world.contracts if k.id == wanted), None)


def won_opportunities(ctx: c.Q2C) -> list[dict[str, Any]]:
    """Every won opportunity in the CRM (a full read; the ledger makes re-reads harmless)."""
    records, _ = ctx.crm.read_changes("Opportunity", Cursor())
    rows = [dict(r.data) for r in records if r.data.get("StageName") == WON]
    return sorted(rows, key=lambda row: (str(row.get("CloseDate")), str(row["Id"])))


def run_deal(salesforce_id: str) -> dict[str, Any]:
    """Run (or return the recorded result of) the deal-won workflow of one opportunity."""
    with SetWorkflowID(f"deal-won-{salesforce_id}"):
        result: dict[str, Any] = deal_won(salesforce_id)
    return result


def sync_won_deals(ctx: c.Q2C) -> list[dict[str, Any]]:
    """Poll the CRM and run every won deal's workflow, one after the other.

    One at a time on purpose: each customer-master decision must see the ones
    before it, or two deals for the same new customer could both create it.
    """
    return [run_deal(str(row["Id"])) for row in won_opportunities(ctx)]


# -- steps ----------------------------------------------------------------------------------


@c.step(0.2)
def load_deal(salesforce_id: str) -> dict[str, Any]:
    ctx = c.current()
    prefix = ctx.crm.prefix
    opp = ctx.crm.request("GET", f"{prefix}/sobjects/Opportunity/{salesforce_id}").json()
    account = ctx.crm.request("GET", f"{prefix}/sobjects/Account/{opp['AccountId']}").json()
    accord_id = opp.get("Accord_Id__c") or f"sf-{salesforce_id}"
    return {
        "opportunity": accord_id,
        "salesforce_id": salesforce_id,
        "name": opp.get("Name"),
        "won_at": sf_stamp(str(opp["SystemModstamp"])),
        "close_date": opp.get("CloseDate"),
        "trace_id": c.trace_of(accord_id),
        "account": {
            "salesforce_id": account["Id"],
            "legal_name": account.get("Name"),
            "domain": account.get("Website"),
            "tax_id": account.get("AccountNumber"),
            "country": account.get("BillingCountry"),
            "currency": account.get("CurrencyIsoCode"),
        },
    }


def _candidates(ctx: c.Q2C) -> tuple[list[Candidate], dict[str, dict[str, Any]]]:
    """The ERP's customers, each under its canonical id (linked when first seen), and
    each ERP row (canonical fields, ``id`` its external id) by its ERP id."""
    connector = ctx.erp_connector
    found: list[Candidate] = []
    rows: dict[str, dict[str, Any]] = {}
    for row in erp_customers(connector):
        erp_id = str(row["external_id"])
        rows[erp_id] = row
        canonical = c.canonical_id(ctx, c.ERP, "customer", erp_id)
        ours = str(row.get("id") or "")
        if canonical is None and ours and c.get(ctx, "account", ours) is not None:
            canonical = ours  # created by Accord: its external id is the canonical id
            c.link(ctx, "account", canonical, c.ERP, "customer", erp_id)
        if canonical is None:
            canonical = deterministic_id("account", c.ERP, erp_id)
            data = {k: row.get(k) for k in ("legal_name", "domain", "default_currency", "status")}
            c.put(ctx, "account", canonical, data, system=c.ERP, trace_id=None)
            c.link(ctx, "account", canonical, c.ERP, "customer", erp_id)
        stored = c.get(ctx, "account", canonical) or {}
        found.append(
            Candidate(
                id=canonical,
                legal_name=str(row.get("legal_name") or stored.get("legal_name") or ""),
                tax_id=stored.get("tax_id"),
                domain=row.get("domain") or stored.get("domain"),
                erp_id=erp_id,
            )
        )
    return found, rows


def _matched_before(
    known: str | None, candidates: list[Candidate], rows: dict[str, dict[str, Any]]
) -> Candidate | None:
    """The ERP customer this account was matched to by an earlier attempt, if it was.

    A step retried after it linked the CRM account finds the account under its own
    canonical id among the ERP's customers, which matching skips as itself; a
    customer Accord created carries that id as its external id, a matched one
    keeps its own, and stays the match.
    """
    if not known:
        return None
    for candidate in candidates:
        if candidate.id == known and candidate.erp_id:
            if str(rows[candidate.erp_id].get("id") or "") != known:
                return candidate
    return None


@c.step(0.2)
def master_customer(deal: dict[str, Any]) -> dict[str, Any]:
    """Match the account against the ERP; create, update, or hold as a possible duplicate."""
    ctx = c.current()
    trace = deal["trace_id"]
    crm = deal["account"]
    if c.get(ctx, "opportunity", deal["opportunity"]) is None:
        c.put(
            ctx,
            "opportunity",
            deal["opportunity"],
            {**_opp_doc(deal), "status": "won"},
            system=c.CRM,
            trace_id=trace,
            action="deal.won",
        )
    c.link(ctx, "opportunity", deal["opportunity"], c.CRM, "Opportunity", deal["salesforce_id"])
    contract = contract_of(ctx, deal["opportunity"])
    known = c.canonical_id(ctx, c.CRM, "Account", crm["salesforce_id"])
    own_id = known or deterministic_id("account", c.CRM, crm["salesforce_id"])
    me = Candidate(own_id, crm["legal_name"] or "", crm["tax_id"], crm["domain"])
    candidates, erp_rows = _candidates(ctx)
    earlier = _matched_before(known, candidates, erp_rows)
    result = (
        MatchResult(Decision.MATCH, earlier, 100.0, "matched to this ERP customer before")
        if earlier is not None
        else match_customer(me, candidates)
    )
    if result.decision is Decision.POSSIBLE_DUPLICATE or (contract is None and not known):
        reason = result.reason if result.candidate else "no contract for this opportunity"
        with ctx.engine.begin() as conn:
            raised = Exceptions(conn, clock=ctx.clock).raise_(
                "possible_duplicate" if result.candidate else "deal_incomplete",
                role="sales_ops",
                summary=f"{crm['legal_name']}: {reason}",
                context={
                    "opportunity": deal["opportunity"],
                    "salesforce_account": crm["salesforce_id"],
                    "candidate": result.candidate.id if result.candidate else None,
                    "candidate_erp_id": result.candidate.erp_id if result.candidate else None,
                    "score": round(result.score, 1),
                },
                dedupe_key=f"deal-held:{deal['opportunity']}",
                trace_id=trace,
            )
        c.put(
            ctx,
            "opportunity",
            deal["opportunity"],
            {**_opp_doc(deal), "status": "held", "exception": raised.id},
            system=c.CRM,
            trace_id=trace,
            action="deal.held",
        )
        return {"decision": "held", "exception": raised.id, "reason": reason}
    assert contract is not None
    matched = result.decision is Decision.MATCH and result.candidate is not None
    account_id = result.candidate.id if matched and result.candidate else own_id
    existing = c.get(ctx, "account", account_id) or {}
    subsidiary = ctx.erp.subsidiaries[contract.entity]
    doc = {
        **existing,
        "legal_name": existing.get("legal_name") or crm["legal_name"],
        "domain": crm["domain"] or existing.get("domain"),
        "tax_id": crm["tax_id"] or existing.get("tax_id"),
        "country": crm["country"],
        "default_currency": contract.currency,
        "billing_key": contract.account,
        "sold_to": account_id,
        "bill_to": account_id,
        "contracting_entity": contract.entity,
        "status": "active",
    }
    c.put(ctx, "account", account_id, doc, system=c.CRM, trace_id=trace, action="customer.master")
    c.link(ctx, "account", account_id, c.CRM, "Account", crm["salesforce_id"])
    canonical = {"id": account_id, **doc}
    if matched and result.candidate and result.candidate.erp_id:
        erp_id = result.candidate.erp_id
        update = {"legal_name": doc["legal_name"], "domain": doc["domain"]}
        if erp_rows[erp_id].get("default_currency") in (None, contract.currency):
            # the ERP owns the currency, but holds none for this customer yet: the
            # contract's is the first (one it already has is never overwritten; the
            # same request again, after it landed, is the same effect)
            update["default_currency"] = contract.currency
        c.perform(
            ctx,
            c.ERP,
            "update_customer",
            (account_id, deal["opportunity"]),
            {
                "object": "customer",
                "operation": "update",
                "external_id": erp_id,
                "canonical": update,
                "refs": {"subsidiary": subsidiary},
            },
            trace_id=trace,
        )
    else:
        outcome = c.perform(
            ctx,
            c.ERP,
            "upsert_customer",
            (account_id,),
            {
                "object": "customer",
                "operation": "upsert",
                "external_id": account_id,
                "canonical": canonical,
                "refs": {"subsidiary": subsidiary},
            },
            trace_id=trace,
        )
        erp_id = str(outcome.external_id)
    c.link(ctx, "account", account_id, c.ERP, "customer", erp_id)
    return {
        "decision": "matched" if matched else "created",
        "account": account_id,
        "erp_customer_id": erp_id,
        "reason": result.reason,
        "contract": contract.id,
    }


def _opp_doc(deal: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": deal["name"],
        "salesforce_id": deal["salesforce_id"],
        "won_at": deal["won_at"],
        "close_date": deal["close_date"],
    }


@c.step(0.2)
def provision_projects(deal: dict[str, Any], customer: dict[str, Any]) -> dict[str, Any]:
    """A PSA client and one PSA project per contract line's project, and the ERP projects."""
    ctx = c.current()
    trace = deal["trace_id"]
    contract = contract_of(ctx, deal["opportunity"])
    assert contract is not None
    account = c.get(ctx, "account", customer["account"]) or {}
    client = c.perform(
        ctx,
        c.PSA,
        "create_client",
        (customer["account"],),
        {
            "object": "clients",
            "operation": "create",
            "data": harvest_mapping.client_from_account(
                {"legal_name": account["legal_name"], "default_currency": contract.currency}
            ),
        },
        trace_id=trace,
    )
    c.link(ctx, "account", customer["account"], c.PSA, "clients", str(client.external_id))
    lines = {line.id for line in contract.lines}
    users = {
        str(record.data.get("email", "")).casefold(): int(record.id)
        for record in ctx.psa.read_changes("users", Cursor())[0]
    }
    projects: dict[str, dict[str, str]] = {}
    for project in sorted(ctx.world.projects.values(), key=lambda p: p.id):
        if project.contract_line not in lines:
            continue
        fields = {
            "name": f"{account['legal_name']} · {project.id}",
            "code": project.id,
            "billable": True,
            "status": "active",
            "starts_on": ctx.world.period_start.isoformat(),
        }
        psa = c.perform(
            ctx,
            c.PSA,
            "create_project",
            (project.id,),
            {
                "object": "projects",
                "operation": "create",
                "data": harvest_mapping.project_from_canonical(
                    fields, client_id=int(str(client.external_id))
                ),
            },
            trace_id=trace,
        )
        erp = c.perform(
            ctx,
            c.ERP,
            "upsert_job",
            (project.id,),
            {
                "object": "job",
                "operation": "upsert",
                "external_id": project.id,
                "canonical": {"name": fields["name"]},
                "refs": {"customer": customer["erp_customer_id"]},
            },
            trace_id=trace,
        )
        c.link(ctx, "project", project.id, c.PSA, "projects", str(psa.external_id))
        c.link(ctx, "project", project.id, c.ERP, "job", str(erp.external_id))
        staffed = _staff(ctx, project.id, int(str(psa.external_id)), users, trace)
        c.put(
            ctx,
            "project",
            project.id,
            {
                **fields,
                "contract": contract.id,
                "contract_line": project.contract_line,
                "account": customer["account"],
                "psa_id": str(psa.external_id),
                "erp_id": str(erp.external_id),
                "staff": staffed,
            },
            system=c.PSA,
            trace_id=trace,
            action="project.provisioned",
        )
        projects[project.id] = {"psa": str(psa.external_id), "erp": str(erp.external_id)}
    return {
        "client": str(client.external_id),
        "projects": projects,
        "provisioned_at": ctx.clock().isoformat(),
    }


def _staff(
    ctx: c.Q2C, project: str, psa_project: int, users: dict[str, int], trace: str
) -> list[str]:
    """Assign the project's people in the PSA: those the contract's staffing plan puts on it.

    Rates stay in Accord's rate cards (Harvest bills the project by project), so
    an assignment carries the person, not a rate. Returns the people assigned.
    """
    staffed: list[str] = []
    for person in sorted(
        {entry.person for entry in ctx.world.time_entries if entry.project == project}
    ):
        user = users.get(ctx.facts.email(person).casefold())
        if user is None:
            continue  # not a PSA user (yet): staffing waits for the person to exist there
        c.perform(
            ctx,
            c.PSA,
            "assign_person",
            (project, person),
            {
                "object": "user_assignments",
                "operation": "create",
                "data": {
                    "project_id": psa_project,
                    **harvest_mapping.user_assignment_from_canonical(user, None),
                },
            },
            trace_id=trace,
        )
        staffed.append(person)
    return staffed


@c.step(0.2)
def billing_schedule(deal: dict[str, Any], customer: dict[str, Any]) -> dict[str, Any]:
    """The contract as canonical version 1 (lines, rate cards) and its monthly schedule."""
    ctx = c.current()
    contract = contract_of(ctx, deal["opportunity"])
    assert contract is not None
    cards = {
        line.rate_card: rate_card_to_doc(ctx.world.rate_cards[line.rate_card])
        for line in contract.lines
        if isinstance(line, TimeAndMaterialsLine) and line.rate_card
    }
    doc = {
        "account": customer["account"],
        "billing_key": contract.account,
        "entity": contract.entity,
        "currency": contract.currency,
        "opportunity": deal["opportunity"],
        "lines": [{"id": line.id, "model": type(line).__name__} for line in contract.lines],
        "rate_cards": cards,
        "amendments": [],
    }
    if c.get(ctx, "contract", contract.id) is None:
        c.put(ctx, "contract", contract.id, doc, system="accord", trace_id=deal["trace_id"])
    schedule = {
        "contract": contract.id,
        "cadence": "monthly",
        "issue_on": "period_end",
        "first_period": [ctx.world.period_start.isoformat(), ctx.world.period_end.isoformat()],
    }
    c.put(
        ctx,
        "billing_schedule",
        contract.id,
        schedule,
        system="accord",
        trace_id=deal["trace_id"],
        action="billing_schedule.set",
    )
    return schedule


@c.step(0.2)
def write_back(deal: dict[str, Any], customer: dict[str, Any], projects: dict[str, Any]) -> None:
    """The ERP customer id (and the customer's status in Accord) onto the CRM account, the
    PSA project ids onto the opportunity."""
    ctx = c.current()
    trace = deal["trace_id"]
    c.perform(
        ctx,
        c.CRM,
        "erp_writeback",
        (customer["account"], customer["erp_customer_id"]),
        {
            "object": "Account",
            "operation": "update",
            "external_id": deal["account"]["salesforce_id"],
            "data": {
                "ERP_Customer_Id__c": customer["erp_customer_id"],
                "ERP_Status__c": "active",
                "Accord_Status__c": "active",
            },
        },
        trace_id=trace,
    )
    ids = ",".join(f"{p}:{v['psa']}" for p, v in sorted(projects["projects"].items()))
    c.perform(
        ctx,
        c.CRM,
        "project_writeback",
        (deal["opportunity"], ids),
        {
            "object": "Opportunity",
            "operation": "update",
            "external_id": deal["salesforce_id"],
            "data": {"PSA_Project_Id__c": ids, "ERP_Customer_Id__c": customer["erp_customer_id"]},
        },
        trace_id=trace,
    )


@DBOS.workflow()
def deal_won(salesforce_id: str) -> dict[str, Any]:
    deal = load_deal(salesforce_id)
    customer = master_customer(deal)
    if customer["decision"] == "held":
        return {"opportunity": deal["opportunity"], "status": "held", **customer}
    projects = provision_projects(deal, customer)
    billing_schedule(deal, customer)
    write_back(deal, customer, projects)
    finished = record_provisioned(deal, customer, projects)
    return finished


@DBOS.step()
def record_provisioned(
    deal: dict[str, Any], customer: dict[str, Any], projects: dict[str, Any]
) -> dict[str, Any]:
    ctx = c.current()
    won = datetime.fromisoformat(deal["won_at"].replace("Z", "+00:00"))
    provisioned = datetime.fromisoformat(projects["provisioned_at"])
    latency = max(0.0, (provisioned - won).total_seconds())
    doc = {
        **_opp_doc(deal),
        "status": "provisioned",
        "account": customer["account"],
        "contract": customer["contract"],
        "customer_decision": customer["decision"],
        "erp_customer_id": customer["erp_customer_id"],
        "psa_client_id": projects["client"],
        "projects": projects["projects"],
        "provisioned_at": projects["provisioned_at"],
        "latency_seconds": round(latency, 3),
    }
    c.put(
        ctx,
        "opportunity",
        deal["opportunity"],
        doc,
        system=c.CRM,
        trace_id=deal["trace_id"],
        action="deal.provisioned",
    )
    return {"opportunity": deal["opportunity"], **doc}
