"""The console over HTTP: sessions, roles, CSRF and the queue actions."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from accord.api.keys import find_key, revoke_key
from accord.store import Exceptions, ExceptionState, entries, verify
from accord.store.api_tables import exception_actions
from accord.store.tables import audit_log, inbox
from tests.console.conftest import RUN, TRACE, Seeded, csrf_of, sign_in

HX = {"HX-Request": "true"}


def test_pages_redirect_to_sign_in_without_a_session(client: TestClient) -> None:
    for path in ("/console", "/console/exceptions", "/console/traces", "/console/health"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/console/login?next=")
    htmx = client.post("/console/exceptions/x/resolve", headers=HX, follow_redirects=False)
    assert htmx.status_code == 401
    assert htmx.headers["hx-redirect"].startswith("/console/login")


def test_a_bad_key_is_refused_with_a_message(client: TestClient) -> None:
    page = client.get("/console/login")
    response = client.post(
        "/console/login", data={"csrf": csrf_of(page.text), "api_key": "acc_nothing_like_it"}
    )
    assert response.status_code == 401
    assert "unknown or revoked API key" in response.text
    assert "accord_console=" not in response.headers.get("set-cookie", "")


def test_sign_in_without_the_form_token_is_refused(client: TestClient, seeded: Seeded) -> None:
    response = client.post("/console/login", data={"api_key": seeded.keys["admin"]})
    assert response.status_code == 403
    assert client.get("/console", follow_redirects=False).status_code == 303


def test_the_session_cookie_is_signed_httponly_strict_and_holds_no_key(
    client: TestClient, seeded: Seeded
) -> None:
    page = client.get("/console/login")
    response = client.post(
        "/console/login",
        data={"csrf": csrf_of(page.text), "api_key": seeded.keys["finance"]},
        follow_redirects=False,
    )
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("accord_console=")
    )
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    secret = seeded.keys["finance"]
    assert secret not in cookie and secret[len("acc_12345678_") :] not in cookie


def test_sign_in_is_audited(client: TestClient, seeded: Seeded) -> None:
    sign_in(client, seeded.keys["pmo"])
    with seeded.engine.connect() as conn:
        assert any(e.action == "console.signed_in" for e in entries(conn))


def test_sign_in_only_follows_console_paths(client: TestClient, seeded: Seeded) -> None:
    page = client.get("/console/login")
    response = client.post(
        "/console/login",
        data={
            "csrf": csrf_of(page.text),
            "api_key": seeded.keys["admin"],
            "next": "https://evil.example/",
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == "/console"


def test_revoking_the_key_ends_its_session(client: TestClient, seeded: Seeded) -> None:
    sign_in(client, seeded.keys["finance"])
    assert client.get("/console", follow_redirects=False).status_code == 200
    key = find_key(seeded.engine, seeded.keys["finance"])
    assert key is not None
    revoke_key(seeded.engine, key.id, actor="test")
    assert client.get("/console", follow_redirects=False).status_code == 303


def test_a_queue_role_sees_only_its_queue(client: TestClient, seeded: Seeded) -> None:
    sign_in(client, seeded.keys["finance"])
    page = client.get("/console/exceptions")
    assert seeded.items["finance"] in page.text
    for role in ("pmo", "sales_ops", "admin"):
        assert seeded.items[role] not in page.text
    assert client.get("/console/exceptions?role=pmo").status_code == 403


def test_admin_sees_every_queue_and_may_retry_only_dead_letters(
    client: TestClient, seeded: Seeded
) -> None:
    sign_in(client, seeded.keys["admin"])
    page = client.get("/console/exceptions").text
    for item in seeded.items.values():
        assert f'id="exc-{item}"' in page
    assert page.count('class="act-retry"') == 1


def test_resolving_needs_a_reason_and_leaves_the_item_open(
    client: TestClient, seeded: Seeded
) -> None:
    sign_in(client, seeded.keys["finance"])
    csrf = csrf_of(client.get("/console/exceptions").text)
    item = seeded.items["finance"]
    response = client.post(
        f"/console/exceptions/{item}/resolve", data={"csrf": csrf, "reason": "  "}, headers=HX
    )
    assert response.status_code == 422
    assert "a reason is required" in response.text
    assert f'id="exc-{item}"' in response.text
    with seeded.engine.connect() as conn:
        found = Exceptions(conn).get(item)
    assert found is not None and found.state is ExceptionState.OPEN


def test_each_action_is_an_audit_entry_and_history_row(client: TestClient, seeded: Seeded) -> None:
    sign_in(client, seeded.keys["pmo"])
    csrf = csrf_of(client.get("/console/exceptions").text)
    item = seeded.items["pmo"]
    assigned = client.post(f"/console/exceptions/{item}/assign", data={"csrf": csrf}, headers=HX)
    assert assigned.status_code == 200 and 'data-state="assigned"' in assigned.text
    ignored = client.post(
        f"/console/exceptions/{item}/ignore",
        data={"csrf": csrf, "reason": "CRM date is right"},
        headers=HX,
    )
    assert 'data-state="ignored"' in ignored.text
    with seeded.engine.connect() as conn:
        audit = [e for e in entries(conn) if e.subject == f"exception/{item}"]
        history = conn.execute(
            select(exception_actions.c.action, exception_actions.c.reason).where(
                exception_actions.c.exception_id == item
            )
        ).all()
        assert verify(conn).ok
    assert [e.action for e in audit] == ["exception.assign", "exception.ignore"]
    assert audit[1].data["reason"] == "CRM date is right"
    assert [tuple(h) for h in history] == [
        ("assign", audit[0].actor),
        ("ignore", "CRM date is right"),
    ]


def test_a_post_without_the_csrf_token_is_refused(client: TestClient, seeded: Seeded) -> None:
    sign_in(client, seeded.keys["finance"])
    item = seeded.items["finance"]
    response = client.post(f"/console/exceptions/{item}/resolve", data={"reason": "x"})
    assert response.status_code == 403
    with seeded.engine.connect() as conn:
        found = Exceptions(conn).get(item)
    assert found is not None and found.state is ExceptionState.OPEN


def test_the_auditor_reads_everything_and_changes_nothing(
    client: TestClient, seeded: Seeded
) -> None:
    sign_in(client, seeded.keys["auditor"])
    page = client.get("/console/exceptions").text
    assert all(f'id="exc-{item}"' in page for item in seeded.items.values())
    assert "<button" not in page.split('class="queue"')[1]
    item = seeded.items["sales_ops"]
    response = client.post(
        f"/console/exceptions/{item}/resolve",
        data={"csrf": csrf_of(page), "reason": "looks fine"},
    )
    assert response.status_code == 403
    with seeded.engine.connect() as conn:
        found = Exceptions(conn).get(item)
    assert found is not None and found.state is ExceptionState.OPEN


def test_a_queue_role_cannot_act_on_another_queue(client: TestClient, seeded: Seeded) -> None:
    sign_in(client, seeded.keys["sales_ops"])
    csrf = csrf_of(client.get("/console/exceptions").text)
    response = client.post(
        f"/console/exceptions/{seeded.items['finance']}/resolve",
        data={"csrf": csrf, "reason": "x"},
        headers=HX,
    )
    assert response.status_code == 404
    assert response.headers["hx-retarget"] == "#flash"


def test_the_integration_role_has_no_exception_queue(client: TestClient, seeded: Seeded) -> None:
    sign_in(client, seeded.keys["integration"])
    assert client.get("/console/exceptions").status_code == 403
    assert "/console/exceptions" not in client.get("/console").text


def test_reconciliation_pages_show_counts_and_discrepancies(
    client: TestClient, seeded: Seeded
) -> None:
    sign_in(client, seeded.keys["finance"])
    runs = client.get("/console/reconciliation").text
    assert RUN in runs
    assert 'data-class="amount_mismatch">1<' in runs and 'data-class="orphan">0<' in runs
    detail = client.get(f"/console/reconciliation/{RUN}?category=missing").text
    assert "INV-9" in detail and "INV-1" not in detail.split("<tbody>")[1]
    assert client.get("/console/reconciliation/nope").status_code == 404
    assert client.get(f"/console/reconciliation/{RUN}?category=bogus").status_code == 422


def test_trace_page_lists_the_ids_in_each_system(client: TestClient, seeded: Seeded) -> None:
    sign_in(client, seeded.keys["sales_ops"])
    page = client.get(f"/console/traces/{TRACE}").text
    assert "001Dn00000Acme" in page and "account.invoice" in page
    assert "opportunity.closed_won from salesforce" in page
    assert client.get("/console/traces/unknown-trace").status_code == 404
    search = client.get(f"/console/traces?trace_id={TRACE}", follow_redirects=False)
    assert search.headers["location"] == f"/console/traces/{TRACE}"


def test_health_shows_the_governor_state(client: TestClient, seeded: Seeded) -> None:
    sign_in(client, seeded.keys["admin"])
    page = client.get("/console/health").text
    assert "stripe" in page and "day: 42" in page
    assert "reachable (sqlite)" in page


def test_pages_forbid_framing_and_foreign_scripts(client: TestClient, seeded: Seeded) -> None:
    sign_in(client, seeded.keys["admin"])
    response = client.get("/console")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["cache-control"] == "no-store"
    assert "http" not in response.text.split("<body")[0].replace("http-equiv", "")


def test_console_routes_are_not_in_the_api_description(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/console")]


def test_retry_replays_a_dead_letter(client: TestClient, seeded: Seeded) -> None:
    sign_in(client, seeded.keys["admin"])
    csrf = csrf_of(client.get("/console/exceptions").text)
    item = seeded.items["admin"]
    response = client.post(f"/console/exceptions/{item}/retry", data={"csrf": csrf}, headers=HX)
    assert response.status_code == 200, response.text
    assert 'data-state="resolved"' in response.text and "Done: replayed." in response.text
    with seeded.engine.connect() as conn:
        status = conn.execute(
            select(inbox.c.status).where(inbox.c.event_id == "evt_poison")
        ).scalar_one()
        actions = conn.execute(
            select(exception_actions.c.action).where(exception_actions.c.exception_id == item)
        ).scalars()
        replays = [e for e in entries(conn) if e.action == "replay"]
        assert list(actions) == ["retry"]
    assert status == "pending"
    assert [e.subject for e in replays] == [f"dead_letter/{item}"]


def test_retry_is_only_for_dead_letters(client: TestClient, seeded: Seeded) -> None:
    sign_in(client, seeded.keys["admin"])
    csrf = csrf_of(client.get("/console/exceptions").text)
    response = client.post(
        f"/console/exceptions/{seeded.items['pmo']}/retry", data={"csrf": csrf}, headers=HX
    )
    assert response.status_code == 409
    assert "not retried" in response.text


def test_the_dashboard_says_where_the_audit_chain_is_broken(
    client: TestClient, seeded: Seeded
) -> None:
    with seeded.engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == 3).values(actor="someone else"))
    sign_in(client, seeded.keys["auditor"])
    page = client.get("/console").text
    assert "broken at entry 3" in page
    sign_in(client, seeded.keys["finance"])
    assert "Auditor or admin role needed." in client.get("/console").text


def test_the_dashboard_measures_as_of_a_chosen_day(client: TestClient, seeded: Seeded) -> None:
    sign_in(client, seeded.keys["finance"])
    today = client.get("/console").text
    earlier = client.get("/console?as_of=2020-01-01").text
    assert "as of 2020-01-01" in earlier and "as of 2020-01-01" not in today
    # nothing had been issued then: no DSO figure in any currency
    assert 'data-kpi="dso:' not in earlier and 'data-kpi="dso:' in today
    refused = client.get("/console?as_of=yesterday")
    assert refused.status_code == 400 and "as_of" in refused.text
