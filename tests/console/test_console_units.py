"""The console's parts without a server: sessions, CSRF, charts, figures."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.console.charts import Bar, bar_chart, column_chart
from accord.console.session import SECRET_ENV, SessionSigner, secret_from_env
from accord.console.views import (
    aging_buckets,
    cycle_histogram,
    cycle_spans,
    duration,
    money,
    percent,
)
from accord.kpi import billing_cycle_time

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
SIGNER = SessionSigner(b"s" * 32, ttl=timedelta(hours=1))


def test_a_session_token_reads_back_who_signed_in() -> None:
    token = SIGNER.issue("key:01ABC", "finance", "key:3f9c2a1b", NOW)
    session = SIGNER.read(token, NOW + timedelta(minutes=59))
    assert session is not None
    assert (session.principal_id, session.role, session.name) == (
        "key:01ABC",
        "finance",
        "key:3f9c2a1b",
    )


def test_a_session_token_expires() -> None:
    token = SIGNER.issue("key:01ABC", "finance", "key:3f9c2a1b", NOW)
    assert SIGNER.read(token, NOW + timedelta(hours=1, seconds=1)) is None


def test_a_tampered_session_token_is_refused() -> None:
    token = SIGNER.issue("key:01ABC", "finance", "key:3f9c2a1b", NOW)
    body, signature = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["role"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    assert SIGNER.read(f"{forged}.{signature}", NOW) is None
    assert SIGNER.read(token + "x", NOW) is None
    assert SIGNER.read("not a token", NOW) is None
    assert SIGNER.read(None, NOW) is None


def test_a_token_signed_with_another_secret_is_refused() -> None:
    other = SessionSigner(b"t" * 32)
    assert SIGNER.read(other.issue("key:1", "admin", "key:x", NOW), NOW) is None


def test_csrf_token_is_bound_to_its_session() -> None:
    assert SIGNER.csrf_ok("sid-1", SIGNER.csrf("sid-1"))
    assert not SIGNER.csrf_ok("sid-2", SIGNER.csrf("sid-1"))
    assert not SIGNER.csrf_ok("sid-1", None)
    assert not SIGNER.csrf_ok(None, SIGNER.csrf("sid-1"))


def test_the_configured_secret_must_be_long(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "short")
    with pytest.raises(ValueError, match=SECRET_ENV):
        secret_from_env()
    monkeypatch.setenv(SECRET_ENV, "x" * 40)
    assert secret_from_env() == b"x" * 40
    monkeypatch.delenv(SECRET_ENV)
    assert secret_from_env() != secret_from_env()


def test_charts_escape_their_labels_and_name_every_value() -> None:
    svg = str(bar_chart("Quota", [Bar("<script>x</script>", 5, "5 of 10", 10)]))
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert "<title>Quota</title>" in svg and "5 of 10" in svg
    assert 'class="chart-limit"' in svg


def test_a_bar_at_its_limit_is_drawn_as_over() -> None:
    assert "chart-bar-over" in str(bar_chart("q", [Bar("stripe", 10, "10", 10)]))
    assert "chart-bar-over" not in str(bar_chart("q", [Bar("stripe", 9, "9", 10)]))


def test_empty_charts_say_so() -> None:
    assert "No data yet." in str(bar_chart("q", []))
    assert "None billed" in str(column_chart("c", [("0–7", 0)], empty="None billed"))


def test_money_is_formatted_from_minor_units_per_currency() -> None:
    assert money(165_000, "EUR") == "1,650.00 EUR"
    assert money(-5, "EUR") == "-0.05 EUR"
    assert money(1050, "JPY") == "1,050 JPY"
    assert money(1234, "BHD") == "1.234 BHD"
    assert money(None, "EUR") == "—"


def test_percent_and_duration_read_naturally() -> None:
    assert percent(Decimal("0.3333")) == "33.3 %"
    assert percent(None) == "—"
    assert duration(42) == "42 s"
    assert duration(125) == "2 min"
    assert duration(3 * 3600 + 300) == "3 h 5 min"
    assert duration(3 * 86400 + 7200) == "3 d 2 h"


def test_aging_puts_open_invoices_in_their_bucket() -> None:
    invoices = [
        {"status": "issued", "issue_date": "2026-03-21", "amount_due": 100, "currency": "EUR"},
        {
            "status": "partially_paid",
            "issue_date": "2026-02-15",
            "amount_due": 50,
            "currency": "EUR",
        },
        {"status": "issued", "issue_date": "2025-11-01", "amount_due": 7, "currency": "EUR"},
        {"status": "paid", "issue_date": "2026-03-01", "amount_due": 0, "currency": "EUR"},
        {"status": "issued", "issue_date": "2026-03-01", "amount_due": 9, "currency": "USD"},
    ]
    assert aging_buckets(invoices, date(2026, 3, 31)) == {
        "EUR": [100, 50, 0, 7],
        "USD": [9, 0, 0, 0],
    }


_source = st.fixed_dictionaries(
    {
        "approval": st.sampled_from(["approved", "submitted"]),
        "billable": st.booleans(),
        "billing": st.sampled_from(["billed", "unbilled"]),
        "approved_on": st.dates(date(2026, 1, 1), date(2026, 3, 31)).map(date.isoformat),
        "invoice_id": st.sampled_from(["A", "B", "C"]),
    }
)
_invoices = {
    "A": {"issue_date": "2026-02-01"},
    "B": {"issue_date": "2026-03-15"},
    "C": {"issue_date": "2026-04-01"},
}


@given(st.lists(_source, max_size=40))
def test_charted_cycle_times_are_what_the_kpi_measures(sources: list[dict[str, object]]) -> None:
    spans = cycle_spans(sources, _invoices)
    kpi = billing_cycle_time(sources, _invoices)
    assert len(spans) == kpi.count
    assert sum(count for _, count in cycle_histogram(spans)) == kpi.count
    if spans:
        assert spans[(len(spans) - 1) // 2] <= kpi.median_days <= spans[len(spans) // 2]  # type: ignore[operator]
        assert kpi.p90_days in spans
