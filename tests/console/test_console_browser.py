"""The console in a real headless Chromium, driven by Playwright.

The app is served by uvicorn on a free loopback port over a seeded SQLite
store. Each test opens a fresh browser context (its own cookies) and saves a
screenshot of the pages it visits to ``test-artifacts/console/``.
Without Debian's ``chromium`` the tests skip, or fail under
``ACCORD_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from accord.api.app import create_app
from accord.api.routers.traces import get_trace
from accord.config import Settings
from accord.console.views import money, percent, quota_limits
from accord.kpi import compute
from accord.store import Exceptions, ExceptionState, entries, make_engine, upgrade
from accord.store.repo import utc_now
from tests.conftest import unavailable
from tests.console.conftest import RUN, TRACE, Seeded, seed

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Seeded, Any]]:
    executable = shutil.which("chromium")
    if executable is None:
        unavailable("Chromium", "no `chromium` on PATH; `make test` installs Debian's")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright", "the playwright package is not installed (dev extra)")
        raise
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = tmp_path_factory.mktemp("console") / "accord.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    seeded = seed(engine)
    app = create_app(engine, Settings())
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the console server did not start")
        time.sleep(0.05)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=executable, headless=True, args=["--no-sandbox"]
            )
            try:
                yield f"http://127.0.0.1:{port}", seeded, browser
            finally:
                browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()


@pytest.fixture
def page(served: tuple[str, Seeded, Any]) -> Iterator[Any]:
    base, _, browser = served
    context = browser.new_context(base_url=base, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _sign_in(page: Any, key: str) -> None:
    page.goto("/console")
    assert "/console/login" in page.url
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console")


def test_a_bad_key_is_refused_with_a_message(page: Any) -> None:
    page.goto("/console/exceptions")
    assert "/console/login" in page.url
    _shot(page, "login")
    page.get_by_label("API key").fill("acc_00000000_not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    message = page.locator("#login-error")
    assert "unknown or revoked API key" in message.inner_text()
    _shot(page, "login-refused")
    page.goto("/console")
    assert "/console/login" in page.url


def test_finance_sees_its_queue_and_resolves_an_item_in_place(
    page: Any, served: tuple[str, Seeded, Any]
) -> None:
    _, seeded, _ = served
    _sign_in(page, seeded.keys["finance"])
    page.get_by_role("link", name="Exceptions").click()
    page.wait_for_url("**/console/exceptions")
    rows = page.locator("table.queue tbody tr[data-role]")
    roles = {rows.nth(n).get_attribute("data-role") for n in range(rows.count())}
    assert roles == {"finance"}
    _shot(page, "exceptions-finance")
    item = seeded.items["finance"]
    page.evaluate("window.__notReloaded = true")
    row = page.locator(f"#exc-{item}")
    row.get_by_label("Reason to resolve").fill("Xero corrected to the Tryton gross")
    row.get_by_role("button", name="Resolve").click()
    page.wait_for_selector(f'#exc-{item}[data-state="resolved"]')
    assert page.evaluate("window.__notReloaded === true"), "the page was reloaded"
    assert "Done: resolved." in page.locator(f"#exc-{item}").inner_text()
    _shot(page, "exceptions-resolved")
    with seeded.engine.connect() as conn:
        audited = [e for e in entries(conn) if e.subject == f"exception/{item}"]
        stored = Exceptions(conn).get(item)
    assert [e.action for e in audited] == ["exception.resolve"]
    assert audited[0].data["reason"] == "Xero corrected to the Tryton gross"
    assert stored is not None and stored.state is ExceptionState.RESOLVED


def test_the_auditor_sees_no_actions_and_a_post_is_refused(
    page: Any, served: tuple[str, Seeded, Any]
) -> None:
    _, seeded, _ = served
    _sign_in(page, seeded.keys["auditor"])
    page.goto("/console/exceptions")
    assert page.locator("#read-only").is_visible()
    assert page.locator("table.queue button").count() == 0
    item = seeded.items["pmo"]
    assert page.locator(f"#exc-{item}").count() == 1
    _shot(page, "exceptions-auditor")
    csrf = page.locator('input[name="csrf"]').first.get_attribute("value")
    response = page.request.post(
        f"/console/exceptions/{item}/resolve",
        form={"csrf": csrf, "reason": "auditor tries"},
        headers={"HX-Request": "true"},
    )
    assert response.status == 403
    with seeded.engine.connect() as conn:
        stored = Exceptions(conn).get(item)
    assert stored is not None and stored.state is ExceptionState.OPEN


def test_the_dashboard_shows_the_figures_kpi_computes(
    page: Any, served: tuple[str, Seeded, Any]
) -> None:
    base, seeded, _ = served
    _sign_in(page, seeded.keys["admin"])
    with seeded.engine.connect() as conn:
        from accord.api.context import ApiContext

        limits = quota_limits(
            ApiContext(engine=seeded.engine, settings=Settings(), hub=None, clock=utc_now)
        )
        kpis = compute(conn, utc_now(), quota_limits=limits)

    def figure(name: str) -> str:
        return str(page.locator(f'[data-kpi="{name}"]').inner_text()).strip()

    assert figure("dso:EUR") == f"{kpis.dso_days['EUR']} d"
    assert figure("cycle:median") == f"{kpis.billing_cycle_time.median_days} d"
    assert figure("cycle:p90") == f"{kpis.billing_cycle_time.p90_days} d"
    assert figure("wip:EUR") == money(kpis.wip["EUR"], "EUR")
    assert figure("leakage:EUR") == percent(kpis.revenue_leakage["EUR"])
    assert figure("dispute") == percent(kpis.dispute_rate)
    assert figure("audit") == "intact"
    assert figure("dead-letters") == "1"
    assert page.locator("svg.chart").count() >= 3
    _shot(page, "dashboard")
    assert kpis.wip == {"EUR": 135_000} and kpis.dispute_rate is not None
    assert base


def test_the_trace_page_shows_the_timeline(page: Any, served: tuple[str, Seeded, Any]) -> None:
    _, seeded, _ = served
    _sign_in(page, seeded.keys["sales_ops"])
    page.get_by_role("link", name="Traces").click()
    page.get_by_label("Trace id").fill(TRACE)
    page.get_by_role("button", name="Show timeline").click()
    page.wait_for_url(f"**/console/traces/{TRACE}")
    from accord.api.context import ApiContext

    expected = get_trace(
        TRACE, ApiContext(engine=seeded.engine, settings=Settings(), hub=None, clock=utc_now)
    )
    steps = page.locator("#timeline li")
    assert steps.count() == len(expected.timeline)
    times = [steps.nth(n).locator("time").get_attribute("datetime") for n in range(steps.count())]
    assert times == sorted(times)
    assert "001Dn00000Acme" in page.locator("table.records").inner_text()
    _shot(page, "trace")


def test_reconciliation_and_health_pages(page: Any, served: tuple[str, Seeded, Any]) -> None:
    _, seeded, _ = served
    _sign_in(page, seeded.keys["admin"])
    page.get_by_role("link", name="Reconciliation").click()
    page.get_by_role("link", name=RUN).click()
    page.wait_for_url(f"**/console/reconciliation/{RUN}")
    assert page.locator("table.discrepancies tbody tr").count() == 3
    _shot(page, "reconciliation-run")
    page.get_by_role("link", name="Health").click()
    assert page.locator("#health-overall").inner_text() == "healthy"
    assert "stripe" in page.locator("table.vendors").inner_text()
    _shot(page, "health")


def test_sign_out_ends_the_session(page: Any, served: tuple[str, Seeded, Any]) -> None:
    _, seeded, _ = served
    _sign_in(page, seeded.keys["pmo"])
    assert page.locator("#who-role").inner_text() == "pmo"
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/console/login**")
    page.goto("/console")
    assert "/console/login" in page.url
    _shot(page, "signed-out")
