"""Ownership policy, per-field decisions, echo suppression, and two-way sync convergence."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from accord.domain.money import Money
from accord.errors import InvalidInput
from accord.ownership import (
    Decision,
    EchoKey,
    FieldSync,
    InMemoryEchoMemory,
    Mode,
    OwnershipConflict,
    OwnershipPolicy,
    PolicyError,
    decide,
    default_policy,
    digest,
    forget_outbound,
    load_policy,
    outbound,
    parse_policy,
    record_inbound,
    record_outbound,
)

POLICY_TEXT = """\
ownership:
  systems:
    crm: salesforce
    erp: xero
  account:
    owner: crm
    fields:
      legal_name: crm
      domain: crm
      payment_terms_days: {owner: erp, mode: review}
      credit_limit: erp
"""

CRM = "salesforce"
ERP = "xero"


@pytest.fixture
def policy() -> OwnershipPolicy:
    return load_policy(POLICY_TEXT)


def account(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "acc-1",
        "legal_name": "Acme Ltd",
        "domain": "acme.example",
        "payment_terms_days": 30,
        "credit_limit": Decimal("10000.00"),
    }
    base.update(fields)
    return base


# -- policy ---------------------------------------------------------------------------


def test_policy_resolves_roles_to_concrete_systems(policy: OwnershipPolicy) -> None:
    assert policy.systems == {"crm": CRM, "erp": ERP}
    assert policy.owner_of("account", "legal_name") == CRM
    assert policy.owner_of("account", "payment_terms_days") == ERP
    assert policy.mode_of("account", "payment_terms_days") is Mode.REVIEW
    assert policy.mode_of("account", "legal_name") is Mode.AUTO


def test_unlisted_field_follows_the_object_default_owner(policy: OwnershipPolicy) -> None:
    assert policy.owner_of("account", "ultimate_parent_id") == CRM


def test_owner_may_be_named_by_role_or_by_concrete_system() -> None:
    policy = load_policy(POLICY_TEXT.replace("credit_limit: erp", "credit_limit: xero"))
    assert policy.owner_of("account", "credit_limit") == ERP


def test_field_inherits_the_object_mode_unless_it_sets_its_own() -> None:
    policy = load_policy(
        """
ownership:
  systems: {billing: stripe, erp: xero}
  invoice:
    owner: billing
    mode: review
    fields:
      status: billing
      number: {mode: auto}
      gl_account: {owner: erp}
"""
    )
    assert policy.mode_of("invoice", "status") is Mode.REVIEW
    assert policy.mode_of("invoice", "amount_due") is Mode.REVIEW
    assert policy.rule("invoice", "number").owner == "stripe"
    assert policy.mode_of("invoice", "number") is Mode.AUTO
    assert policy.rule("invoice", "gl_account").owner == "xero"
    assert policy.mode_of("invoice", "gl_account") is Mode.REVIEW


def test_default_policy_gives_each_area_to_its_system() -> None:
    policy = default_policy()
    crm, psa, erp, billing = (policy.systems[r] for r in ("crm", "psa", "erp", "billing"))
    for name in ("legal_name", "tax_ids", "domain", "parent_id"):
        assert policy.owner_of("account", name) == crm
    for name in ("payment_terms_days", "credit_limit", "erp_customer_id"):
        assert policy.owner_of("account", name) == erp
    assert policy.owner_of("invoice", "status") == billing
    assert policy.owner_of("invoice", "amount_due") == billing
    assert policy.owner_of("project", "status") == psa
    assert policy.owner_of("project", "budget") == psa
    assert policy.owner_of("time_entry", "hours") == psa
    assert policy.owner_of("payment", "amount") == billing
    assert policy.mode_of("payment", "amount") is Mode.REVIEW


BAD_POLICIES = [
    pytest.param(
        POLICY_TEXT.replace("credit_limit: erp", "credit_limit: erpx"),
        "ownership.account.fields.credit_limit",
        11,
        "unknown system 'erpx'",
        id="unknown-system",
    ),
    pytest.param(
        POLICY_TEXT.replace("{owner: erp, mode: review}", "{owner: erp, mode: heal}"),
        "ownership.account.fields.payment_terms_days.mode",
        10,
        "unknown mode 'heal'",
        id="unknown-mode",
    ),
    pytest.param(
        POLICY_TEXT.replace("    owner: crm\n", "    ower: crm\n"),
        "ownership.account.ower",
        6,
        "unknown key 'ower'",
        id="misspelt-key",
    ),
    pytest.param(
        POLICY_TEXT.replace("    owner: crm\n", ""),
        "ownership.account",
        5,
        "missing 'owner'",
        id="missing-owner",
    ),
    pytest.param(
        POLICY_TEXT.replace("      domain: crm\n", "      domain: crm\n      legal_name: erp\n"),
        "ownership.account.fields.legal_name",
        10,
        "duplicate key 'legal_name'",
        id="duplicate-field",
    ),
    pytest.param(
        POLICY_TEXT.replace("    erp: xero\n", "    erp: [xero]\n"),
        "ownership.systems.erp",
        4,
        "expected a system name",
        id="system-not-a-name",
    ),
    pytest.param(
        POLICY_TEXT + "  Invoice: {owner: crm}\n",
        "ownership.Invoice",
        12,
        "entity type 'Invoice'",
        id="entity-type-not-snake-case",
    ),
    pytest.param(
        POLICY_TEXT + "      id: crm\n",
        "ownership.account.fields.id",
        12,
        "no system owns it",
        id="id-has-no-owner",
    ),
    pytest.param(
        POLICY_TEXT.replace("  systems:\n    crm: salesforce\n    erp: xero\n", ""),
        "ownership",
        1,
        "missing 'systems'",
        id="no-systems",
    ),
    pytest.param(
        POLICY_TEXT.replace("credit_limit: erp", "credit_limit: {owner: erp"),
        "",
        12,
        "while parsing a flow mapping at line 11",
        id="broken-yaml",
    ),
]


@pytest.mark.parametrize(("text", "path", "line", "message"), BAD_POLICIES)
def test_policy_errors_name_the_key_path_and_the_line(
    text: str, path: str, line: int, message: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(text, source="accord.yaml")
    error = caught.value
    assert (error.path, error.line) == (path, line)
    assert message in error.message
    assert str(error).startswith(f"accord.yaml:{line}: {path}")
    assert isinstance(error, InvalidInput)


def test_policy_error_message_reads_as_path_then_problem() -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(POLICY_TEXT.replace("credit_limit: erp", "credit_limit: erpx"))
    assert str(caught.value).startswith(
        "line 11: ownership.account.fields.credit_limit: unknown system 'erpx'"
    )


def test_a_policy_given_as_data_is_checked_the_same_way_without_lines() -> None:
    document = {"ownership": {"systems": {"crm": "salesforce"}, "account": {"owner": "erpx"}}}
    with pytest.raises(PolicyError) as caught:
        parse_policy(document)
    assert str(caught.value).startswith("ownership.account.owner: unknown system 'erpx'")
    assert caught.value.line is None


def test_policy_section_of_a_larger_config_ignores_its_neighbours() -> None:
    policy = load_policy("schedules: {billing: monthly}\n" + POLICY_TEXT)
    assert policy.owner_of("account", "domain") == CRM


# -- decide -------------------------------------------------------------------------


def test_non_owner_change_is_a_conflict_showing_both_values_and_is_not_applied(
    policy: OwnershipPolicy,
) -> None:
    echo = InMemoryEchoMemory()
    decision = decide(
        policy, "account", account(), {"id": "acc-1", "legal_name": "ACME Inc"}, ERP, echo
    )
    assert decision.apply == ()
    assert decision.changes == {}
    assert decision.conflicts == (
        OwnershipConflict(
            entity_type="account",
            entity_id="acc-1",
            field="legal_name",
            current="Acme Ltd",
            incoming="ACME Inc",
            owner=CRM,
            source=ERP,
        ),
    )
    conflict = decision.conflicts[0]
    assert conflict.kind == "ownership_conflict"
    assert "'ACME Inc'" in conflict.message and "'Acme Ltd'" in conflict.message


def test_owner_change_is_applied(policy: OwnershipPolicy) -> None:
    echo = InMemoryEchoMemory()
    decision = decide(
        policy, "account", account(), {"id": "acc-1", "payment_terms_days": 45}, ERP, echo
    )
    assert decision.changes == {"payment_terms_days": 45}
    assert decision.conflicts == ()
    assert not decision.is_noop


def test_one_change_can_mix_owned_refused_and_unchanged_fields(policy: OwnershipPolicy) -> None:
    incoming = {"id": "acc-1", "legal_name": "Acme Ltd", "domain": "acme.test", "credit_limit": 5}
    decision = decide(policy, "account", account(), incoming, CRM, InMemoryEchoMemory())
    assert decision.changes == {"domain": "acme.test"}
    assert [c.field for c in decision.conflicts] == ["credit_limit"]
    assert decision.unchanged == ("legal_name",)


def test_echo_of_accords_own_write_is_dropped(policy: OwnershipPolicy) -> None:
    echo = InMemoryEchoMemory()
    record = account(payment_terms_days=45)
    fields = outbound(policy, "account", record, CRM, echo)
    assert fields == {"payment_terms_days": 45, "credit_limit": Decimal("10000.00")}
    record_outbound(echo, CRM, "account", "acc-1", fields)

    # The CRM's webhook reports Accord's own write back; the canonical record
    # meanwhile moved on (the ERP changed the terms again), so without echo
    # suppression this would be a conflict or, worse, a write back to the ERP.
    current = account(payment_terms_days=60)
    decision = decide(
        policy, "account", current, {"id": "acc-1", "payment_terms_days": 45}, CRM, echo
    )
    assert decision.echoes == ("payment_terms_days",)
    assert decision.is_noop


def test_genuine_later_change_of_the_same_field_by_the_owner_is_applied(
    policy: OwnershipPolicy,
) -> None:
    echo = InMemoryEchoMemory()
    # Accord created the account in the CRM from the ERP's data, name included.
    record_outbound(echo, CRM, "account", "acc-1", {"legal_name": "Acme Ltd"})
    current = account()

    first = decide(policy, "account", current, {"id": "acc-1", "legal_name": "Acme Ltd"}, CRM, echo)
    assert first.echoes == ("legal_name",)
    record_inbound(echo, first)

    renamed = decide(policy, "account", current, {"id": "acc-1", "legal_name": "ACME"}, CRM, echo)
    assert renamed.changes == {"legal_name": "ACME"}
    record_inbound(echo, renamed)
    current = {**current, **renamed.changes}

    # Renamed back to exactly what Accord once wrote: a real change now, not an echo.
    back = decide(policy, "account", current, {"id": "acc-1", "legal_name": "Acme Ltd"}, CRM, echo)
    assert back.changes == {"legal_name": "Acme Ltd"}
    assert back.echoes == ()


def test_value_that_differs_from_accords_last_write_is_not_an_echo(
    policy: OwnershipPolicy,
) -> None:
    echo = InMemoryEchoMemory()
    record_outbound(echo, CRM, "account", "acc-1", {"payment_terms_days": 45})
    decision = decide(
        policy,
        "account",
        account(payment_terms_days=45),
        {"id": "acc-1", "payment_terms_days": 14},
        CRM,
        echo,
    )
    assert decision.echoes == ()
    assert [(c.current, c.incoming) for c in decision.conflicts] == [(45, 14)]


def test_non_owner_value_fills_a_gap_provisionally(policy: OwnershipPolicy) -> None:
    decision = decide(
        policy, "account", None, {"id": "acc-9", "legal_name": "Newco"}, ERP, InMemoryEchoMemory()
    )
    assert [(c.field, c.value, c.provisional) for c in decision.apply] == [
        ("legal_name", "Newco", True)
    ]
    assert decision.conflicts == ()


def test_decide_needs_a_known_entity_type_system_and_id(policy: OwnershipPolicy) -> None:
    echo = InMemoryEchoMemory()
    with pytest.raises(InvalidInput, match="entity type 'invoice'"):
        decide(policy, "invoice", None, {"id": "i-1", "status": "paid"}, CRM, echo)
    with pytest.raises(InvalidInput, match="unknown system 'hubspot'"):
        decide(policy, "account", None, {"id": "a"}, "hubspot", echo)
    with pytest.raises(InvalidInput, match="canonical id"):
        decide(policy, "account", None, {"domain": "x.example"}, CRM, echo)
    explicit = decide(policy, "account", None, {"domain": "x.example"}, CRM, echo, entity_id="a")
    assert explicit.entity_id == "a"


def test_outbound_never_writes_a_field_to_its_owner(policy: OwnershipPolicy) -> None:
    assert set(outbound(policy, "account", account(), CRM)) == {
        "payment_terms_days",
        "credit_limit",
    }
    assert set(outbound(policy, "account", account(), ERP)) == {"legal_name", "domain"}


def test_outbound_skips_what_the_target_already_holds_and_restores_refused_edits(
    policy: OwnershipPolicy,
) -> None:
    echo = InMemoryEchoMemory()
    record = account()
    record_outbound(echo, ERP, "account", "acc-1", outbound(policy, "account", record, ERP, echo))
    assert outbound(policy, "account", record, ERP, echo) == {}

    # Someone edits the CRM-owned name in the ERP: refused, and put back.
    edit = decide(policy, "account", record, {"id": "acc-1", "legal_name": "Acme (ERP)"}, ERP, echo)
    assert len(edit.conflicts) == 1
    record_inbound(echo, edit)
    assert outbound(policy, "account", record, ERP, echo) == {"legal_name": "Acme Ltd"}


def test_a_failed_write_is_forgotten_so_it_is_tried_again(policy: OwnershipPolicy) -> None:
    echo = InMemoryEchoMemory()
    fields = outbound(policy, "account", account(), ERP, echo)
    record_outbound(echo, ERP, "account", "acc-1", fields)
    forget_outbound(echo, ERP, "account", "acc-1", fields)
    assert outbound(policy, "account", account(), ERP, echo) == fields
    assert not echo.is_echo(ERP, "account", "acc-1", "legal_name", digest("Acme Ltd"))


def test_digest_is_equal_for_equal_values_and_apart_for_different_ones() -> None:
    assert digest(Decimal("1.50")) == digest(Decimal("1.5"))
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": (1, 2), "a": 1})
    assert digest(Money(100, "EUR")) == digest(Money(100, "EUR"))
    assert digest(Money(100, "EUR")) != digest(Money(100, "GBP"))
    assert len({digest(1), digest(True), digest("1"), digest(Decimal(1)), digest(None)}) == 5
    with pytest.raises(InvalidInput):
        digest(float("nan"))
    with pytest.raises(InvalidInput):
        digest(object())


# -- two systems syncing both ways -----------------------------------------------------

FIELDS = ("legal_name", "domain", "payment_terms_days", "credit_limit")
RECORDS = ("acc-1", "acc-2")
# Values an owner may set (the first is the initial value) and values a non-owner
# may set. The two never overlap, so every non-owner edit overrules nothing and
# must become exactly one conflict.
OWNER_VALUES: dict[str, tuple[Any, ...]] = {
    "legal_name": ("Acme Ltd", "Acme Limited", "ACME"),
    "domain": ("acme.example", "acme.test"),
    "payment_terms_days": (30, 45, 60),
    "credit_limit": (Decimal("10000.00"), Decimal("25000"), None),
}
INTRUDER_VALUES: dict[str, tuple[Any, ...]] = {
    "legal_name": ("Acme (ERP copy)", "acme ltd."),
    "domain": ("acme-erp.example",),
    "payment_terms_days": (14, 90),
    "credit_limit": (Decimal("1"), Decimal("99.99")),
}


@dataclass
class Event:
    """A change webhook: the record and the fields that were written."""

    record_id: str
    fields: dict[str, Any]


@dataclass
class FakeSystem:
    """A vendor system: records, and a change log that every write appends to.

    Writes by people and writes by Accord look the same in the log, as they do
    in a real webhook feed — which is what would make an integration ping-pong.
    """

    name: str
    records: dict[str, dict[str, Any]]
    log: list[Event] = field(default_factory=list)

    def write(self, record_id: str, fields: dict[str, Any]) -> None:
        self.records[record_id].update(fields)
        self.log.append(Event(record_id, dict(fields)))

    def changes_since(self, cursor: int) -> tuple[list[Event], int]:
        return self.log[cursor:], len(self.log)


@dataclass(frozen=True)
class Edit:
    """A person changes some fields of one record in one system."""

    system: str
    record_id: str
    fields: tuple[tuple[str, Any], ...]


class Sync:
    """Accord in miniature: pull changes into the canonical store, push out diffs."""

    def __init__(self, policy: OwnershipPolicy, systems: list[FakeSystem]) -> None:
        self.policy = policy
        self.systems = systems
        initial = systems[0].records
        self.store = {rid: {"id": rid, **rec} for rid, rec in initial.items()}
        self.echo = InMemoryEchoMemory()
        self.cursors = {s.name: 0 for s in systems}
        self.conflicts: list[OwnershipConflict] = []
        self.field_writes = 0
        # The systems start in agreement, as after an initial sync.
        for system in systems:
            for rid, rec in system.records.items():
                for name, value in rec.items():
                    self.echo.observe(system.name, "account", rid, name, digest(value))

    def pull(self) -> int:
        """Read every system's new changes; returns how many events were read."""
        read = 0
        for system in self.systems:
            events, self.cursors[system.name] = system.changes_since(self.cursors[system.name])
            for event in events:
                read += 1
                current = self.store.get(event.record_id)
                incoming = {"id": event.record_id, **event.fields}
                decision: Decision = decide(
                    self.policy, "account", current, incoming, system.name, self.echo
                )
                self.store[event.record_id].update(decision.changes)
                self.conflicts.extend(decision.conflicts)
                record_inbound(self.echo, decision)
        return read

    def push(self) -> int:
        """Write to each system what it does not hold yet; returns field writes."""
        written = 0
        for rid, record in sorted(self.store.items()):
            for system in self.systems:
                fields = outbound(self.policy, "account", record, system.name, self.echo)
                if fields:
                    record_outbound(self.echo, system.name, "account", rid, fields)
                    system.write(rid, fields)
                    written += len(fields)
        self.field_writes += written
        return written

    def settle(self, max_rounds: int) -> int:
        """Sync until a round reads and writes nothing; returns the rounds it took."""
        for rounds in range(1, max_rounds + 1):
            read = self.pull()
            written = self.push()
            if read == 0 and written == 0:
                return rounds
        raise AssertionError(f"still syncing after {max_rounds} rounds (ping-pong)")


@st.composite
def edits(draw: st.DrawFn, policy: OwnershipPolicy) -> Edit:
    system = draw(st.sampled_from((CRM, ERP)))
    names = draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True))
    values = tuple(
        (
            name,
            draw(
                st.sampled_from(
                    OWNER_VALUES[name]
                    if policy.owner_of("account", name) == system
                    else INTRUDER_VALUES[name]
                )
            ),
        )
        for name in names
    )
    return Edit(system, draw(st.sampled_from(RECORDS)), values)


SIM_POLICY = load_policy(POLICY_TEXT)
Step = Edit | str
STEPS = st.lists(
    st.one_of(edits(SIM_POLICY), edits(SIM_POLICY), st.sampled_from(("pull", "push", "sync"))),
    max_size=40,
)
# A round reads both systems and then writes; so the worst case after the last
# edit is: one round to apply and correct, one to swallow the echoes, one quiet.
SETTLE_ROUNDS = 3

CONCURRENT_SAME_FIELD: list[Step] = [
    Edit(CRM, "acc-1", (("legal_name", "ACME"),)),
    Edit(ERP, "acc-1", (("legal_name", "Acme (ERP copy)"),)),
    Edit(ERP, "acc-1", (("payment_terms_days", 45),)),
    Edit(CRM, "acc-1", (("payment_terms_days", 14),)),
    "sync",
    Edit(ERP, "acc-1", (("legal_name", "acme ltd."),)),
    "pull",
    Edit(CRM, "acc-1", (("legal_name", "Acme Limited"),)),
    "push",
]


@settings(max_examples=300, deadline=None)
@given(steps=STEPS)
@example(steps=CONCURRENT_SAME_FIELD)
def test_two_way_sync_with_concurrent_edits_converges_without_ping_pong(
    steps: list[Step],
) -> None:
    policy = SIM_POLICY
    initial = {rid: {name: OWNER_VALUES[name][0] for name in FIELDS} for rid in RECORDS}
    crm = FakeSystem(CRM, {rid: dict(rec) for rid, rec in initial.items()})
    erp = FakeSystem(ERP, {rid: dict(rec) for rid, rec in initial.items()})
    systems = {CRM: crm, ERP: erp}
    sync = Sync(policy, [crm, erp])

    owner_latest = {
        (rid, name): value for rid, rec in initial.items() for name, value in rec.items()
    }
    overruled: Counter[tuple[str, str, str, Any]] = Counter()
    field_edits = 0
    for step in steps:
        if isinstance(step, Edit):
            systems[step.system].write(step.record_id, dict(step.fields))
            for name, value in step.fields:
                field_edits += 1
                if policy.owner_of("account", name) == step.system:
                    owner_latest[(step.record_id, name)] = value
                else:
                    overruled[(step.system, step.record_id, name, digest(value))] += 1
        elif step in ("pull", "sync"):
            sync.pull()
        if step in ("push", "sync"):
            sync.push()

    rounds = sync.settle(max_rounds=10)

    assert rounds <= SETTLE_ROUNDS
    # Bounded writes: never more than the edits that needed them, far below the
    # edits × fields × 2 that would still count as "bounded" for a ping-pong.
    assert sync.field_writes <= field_edits
    assert sync.field_writes <= field_edits * len(FIELDS) * 2
    # Everyone agrees, and on the owner's latest value.
    for rid in RECORDS:
        for name in FIELDS:
            expected = owner_latest[(rid, name)]
            assert crm.records[rid][name] == expected, (rid, name)
            assert erp.records[rid][name] == expected, (rid, name)
            assert sync.store[rid][name] == expected, (rid, name)
    # Every overruled edit is exactly one conflict, and nothing else is.
    raised = Counter((c.source, c.entity_id, c.field, digest(c.incoming)) for c in sync.conflicts)
    assert raised == overruled
    for conflict in sync.conflicts:
        assert conflict.owner == policy.owner_of("account", conflict.field)
        assert conflict.owner != conflict.source
        assert conflict.current in OWNER_VALUES[conflict.field]


def test_without_echo_memory_the_same_loop_never_settles() -> None:
    """The reason the memory exists: forgetting every write makes each push echo forever."""

    class Forgetful(InMemoryEchoMemory):
        def store(self, key: EchoKey, state: FieldSync) -> None:
            return None

    records = {"acc-1": {name: OWNER_VALUES[name][0] for name in FIELDS}}
    crm = FakeSystem(CRM, {k: dict(v) for k, v in records.items()})
    erp = FakeSystem(ERP, {k: dict(v) for k, v in records.items()})
    sync = Sync(SIM_POLICY, [crm, erp])
    sync.echo = Forgetful()
    crm.write("acc-1", {"legal_name": "ACME"})
    with pytest.raises(AssertionError, match="ping-pong"):
        sync.settle(max_rounds=10)
