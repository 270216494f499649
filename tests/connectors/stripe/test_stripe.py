"""The Stripe connector against its stand-in over real HTTP, checked against Stripe's OpenAPI.

Every exchange in these tests goes through a recording transport; after each
test every request the connector (or the test) sent and every response the
stand-in returned is validated against Stripe's own OpenAPI description
(``../shared/specs/stripe/spec3.yaml``, API 2023-08-16), so that neither side
can drift into a dialect only the other speaks. Where that folder is absent the
validation is skipped and says so.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.casting.schemas import oas30_write_schema_casters_factory
from openapi_core.deserializing.styles import StyleDeserializersFactory, style_deserializers
from openapi_core.testing import MockRequest, MockResponse
from openapi_core.validation.schemas import oas30_read_schema_validators_factory

from accord.connectors.base import ConnectorVendor, Cursor, WriteRequest
from accord.connectors.stripe import StripeConnector, encode_form, mapping
from accord.errors import InvalidInput, TransientError
from accord.runtime.effects import (
    Effect,
    EffectExecutor,
    EffectFailed,
    MemoryLedger,
    effect_key,
)
from accord.runtime.retry import RetryPolicy
from accord.sandbox.recorder import Faults
from accord.sandbox.stripe import StripeStandIn, parse_form, sign_payload

ROOT = Path(__file__).resolve().parents[3]
SPEC = ROOT.parent / "shared" / "specs" / "stripe" / "spec3.yaml"
API_KEY = "sk_test_accord_stand_in"
WEBHOOK_SECRET = "whsec_accord_test_secret"
T0 = 1_700_000_000  # 2023-11-14T22:13:20Z


# -- validation against Stripe's OpenAPI --------------------------------------------------


def _deep_object(explode: bool, name: str, schema_type: str, location: Mapping[str, Any]) -> Any:
    """``deepObject`` decoding as Stripe uses it: nested brackets, any schema (anyOf too).

    openapi-core's own decoder refuses ``anyOf`` schemas (Stripe's ``metadata``,
    ``created``) even when the parameter is absent, so Stripe's description
    cannot be checked without this.
    """
    keys = [key for key in location if key.startswith(f"{name}[")]
    if not keys:
        raise KeyError(name)
    tree: dict[str, Any] = {}
    for key in keys:
        parts = re.findall(r"\[([^\]]*)\]", key[len(name) :])
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = location[key]

    def listify(value: Any) -> Any:
        if isinstance(value, dict):
            value = {k: listify(v) for k, v in value.items()}
            if value and all(k.isdigit() for k in value):
                return [value[k] for k in sorted(value, key=int)]
        return value

    return listify(tree)


def _null_where_stripe_says(node: Any) -> None:
    """Let ``null`` through wherever Stripe marks a schema ``nullable``.

    Stripe's API sends ``null`` for every ``nullable`` field (see its
    ``fixtures3.json``), but a strict OpenAPI 3.0.3 validator honours
    ``nullable`` only beside ``type`` and, for an ``enum``, only when the enum
    lists ``null`` — which Stripe's description does in neither case
    (``nullable`` beside ``anyOf`` 437 times: ``address``, ``discount`` …; and
    nullable enums such as ``automatic_tax.status``). This adds the ``null``
    Stripe means, and nothing else.
    """
    if isinstance(node, dict):
        for value in node.values():
            _null_where_stripe_says(value)
        if node.get("nullable") is True:
            if "type" not in node and "anyOf" in node:
                node["anyOf"] = [
                    *node["anyOf"],
                    {"type": "object", "nullable": True, "enum": [None]},
                ]
            if "enum" in node and None not in node["enum"]:
                node["enum"] = [*node["enum"], None]
    elif isinstance(node, list):
        for item in node:
            _null_where_stripe_says(item)


def _load_openapi(path: Path) -> OpenAPI:
    with path.open() as text:
        spec = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    _null_where_stripe_says(spec)
    styles = StyleDeserializersFactory(
        oas30_write_schema_casters_factory,
        style_deserializers={**style_deserializers, "deepObject": _deep_object},
    )
    # the description itself is Stripe's; checking it would only cost seconds. None is
    # openapi-core's documented "skip", though its annotation leaves it out
    config = Config(
        spec_validator_cls=None,  # type: ignore[arg-type]
        style_deserializers_factory=styles,
    )
    return OpenAPI.from_dict(spec, config=config)


def _as_openapi(request: httpx.Request) -> MockRequest:
    return MockRequest(
        "https://api.stripe.com",
        request.method.lower(),
        request.url.path,
        args=dict(parse_qsl(request.url.query.decode(), keep_blank_values=True)),
        headers=dict(request.headers),
        data=request.content,
        content_type=request.headers.get("content-type", ""),
    )


def conformance_problems(openapi: OpenAPI, recorded: RecordingTransport) -> list[str]:
    """Every way the recorded requests and responses depart from Stripe's description.

    Besides openapi-core's checks, a parameter the operation does not declare
    counts as a problem: Stripe refuses unknown parameters, while openapi-core
    quietly drops them from form bodies. Requests a test sent malformed on
    purpose are not checked; the answers to them are.
    """
    problems: list[str] = []
    for index, (request, response) in enumerate(recorded.exchanges):
        where = f"{request.method} {request.url.path}"
        spec_request = _as_openapi(request)
        result = openapi.unmarshal_request(spec_request)
        if index not in recorded.waived:
            problems += [f"{where} request: {_why(error)}" for error in result.errors]
        if not result.errors:
            sent_query = {key.partition("[")[0] for key in spec_request.parameters.query}
            unknown = sent_query - set(result.parameters.query)
            sent_body = {k.partition("[")[0] for k, _ in parse_qsl(request.content.decode())}
            body = result.body if isinstance(result.body, Mapping) else {}
            unknown |= sent_body - set(body)
            if unknown:
                problems.append(f"{where} request: undeclared parameters {sorted(unknown)}")
        if response is None:
            continue  # the stand-in dropped the connection: nothing to check
        spec_response = MockResponse(
            response.content,
            status_code=response.status_code,
            headers=dict(response.headers),
            content_type=response.headers.get("content-type", ""),
        )
        answer = openapi.unmarshal_response(spec_request, spec_response)
        problems += [f"{where} → {response.status_code}: {_why(e)}" for e in answer.errors]
    return problems


def _why(error: Exception) -> str:
    """The schema errors under an openapi-core error, with where in the document they are."""
    cause = error.__cause__ or error
    found = getattr(cause, "schema_errors", None) or ()
    details = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in found]
    return f"{error!r} " + ("; ".join(details) if details else repr(cause))


class RecordingTransport(httpx.BaseTransport):
    """A real HTTP transport that keeps every request and response, for validation."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self.exchanges: list[tuple[httpx.Request, httpx.Response | None]] = []
        self.waived: set[int] = set()
        """Indices of requests sent malformed on purpose (their answers are still checked)."""
        self._waiving = False

    @contextmanager
    def malformed_on_purpose(self) -> Iterator[None]:
        """Requests sent inside are meant to break Stripe's rules; do not hold them to it."""
        self._waiving = True
        try:
            yield
        finally:
            self._waiving = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        if self._waiving:
            self.waived.add(len(self.exchanges))
        try:
            response = self._inner.handle_request(request)
        except httpx.TransportError:
            self.exchanges.append((request, None))
            raise
        response.read()
        self.exchanges.append((request, response))
        return response

    def close(self) -> None:
        self._inner.close()

    def paths(self, method: str) -> list[str]:
        return [r.url.path for r, _ in self.exchanges if r.method == method]


@pytest.fixture(scope="module")
def openapi() -> OpenAPI | None:
    """Stripe's description, parsed once per module (it is 4 MB); ``None`` when absent."""
    return _load_openapi(SPEC) if SPEC.exists() else None


@pytest.fixture
def transport(openapi: OpenAPI | None) -> Iterator[RecordingTransport]:
    """Records one test's exchanges and, after it, holds them to Stripe's description."""
    recorder = RecordingTransport()
    yield recorder
    recorder.close()
    if openapi is not None:
        problems = conformance_problems(openapi, recorder)
        assert not problems, "\n".join(problems)


# -- the stand-in, the connector and friends ----------------------------------------------


class Clock:
    """A settable Unix clock, so that many events can share one ``created`` second."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def stripe(clock: Clock) -> Iterator[StripeStandIn]:
    with StripeStandIn(api_key=API_KEY, clock=clock, seed=7, rate_limit=None) as server:
        yield server


@pytest.fixture
def connector(stripe: StripeStandIn, transport: RecordingTransport) -> Iterator[StripeConnector]:
    client = StripeConnector(
        base_url=stripe.url,
        credentials={"api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET},
        transport=transport,
    )
    yield client
    client.close()


def customer(accord_id: str, key: str | None = None) -> WriteRequest:
    return WriteRequest(
        object="customer",
        operation="create",
        data={"id": accord_id, "legal_name": f"Client {accord_id}", "email": "ap@example.com"},
        idempotency_key=key or effect_key("stripe", "create_customer", accord_id),
    )


def executor(connector: StripeConnector) -> tuple[EffectExecutor, MemoryLedger]:
    ledger = MemoryLedger()
    vendors = {"stripe": ConnectorVendor(connector)}
    policy = RetryPolicy(initial_interval=0.0, maximum_attempts=5)
    return EffectExecutor(ledger, vendors, policy, sleep=lambda _: None), ledger


def effect(request: WriteRequest) -> Effect:
    return Effect(
        system="stripe",
        operation=f"create_{request.object}",
        key=request.idempotency_key,
        request={"object": request.object, "operation": request.operation, "data": request.data},
    )


# -- incremental reads --------------------------------------------------------------------


def test_incremental_read_pages_through_events_sharing_a_second_without_loss_or_repeat(
    stripe: StripeStandIn, connector: StripeConnector, clock: Clock, transport: RecordingTransport
) -> None:
    connector.page_size = 2
    for n in range(5):
        connector.write(customer(f"a{n}"))

    first, cursor = connector.read_changes("event", Cursor())
    assert len(first) == 5
    assert transport.paths("GET").count("/v1/events") == 3  # pages of 2, 2 and 1

    for n in range(5, 8):  # three more in the very same second
        connector.write(customer(f"a{n}"))
    second, cursor = connector.read_changes("event", Cursor.decode(cursor.encode()))

    clock.now = T0 + 1
    for n in range(8, 10):
        connector.write(customer(f"a{n}"))
    third, cursor = connector.read_changes("customer", cursor)
    fourth, unchanged = connector.read_changes("event", cursor)

    read = [r.id for r in (*first, *second, *third)]
    assert sorted(read) == sorted(e["id"] for e in stripe.events())  # none missed
    assert len(read) == len(set(read)) == 10  # none twice
    assert [len(second), len(third), fourth] == [3, 2, []]
    assert unchanged == cursor
    assert cursor.value == mapping.stamp(T0 + 1)
    assert {r.object for r in (*first, *second, *third)} == {"customer"}
    assert {r.data["data"]["object"]["metadata"]["accord_id"] for r in third} == {"a8", "a9"}


# -- idempotent writes --------------------------------------------------------------------


def test_the_same_write_sent_twice_makes_one_object(
    stripe: StripeStandIn, connector: StripeConnector, transport: RecordingTransport
) -> None:
    first = connector.write(customer("acme"))
    again = connector.write(customer("acme"))

    assert stripe.counts["customer"] == 1
    assert again.external_id == first.external_id
    assert (first.replayed, again.replayed) == (False, True)
    replay = transport.exchanges[-1][1]
    assert replay is not None and replay.headers["Idempotent-Replayed"] == "true"


def test_a_key_reused_with_other_parameters_is_refused_for_good(
    stripe: StripeStandIn, connector: StripeConnector
) -> None:
    connector.write(customer("acme", key="shared-key"))
    other = WriteRequest("customer", "create", {"id": "other", "legal_name": "Other"}, "shared-key")

    with pytest.raises(InvalidInput, match="idempotency_error") as refused:
        connector.write(other)

    assert not refused.value.retryable
    assert stripe.counts["customer"] == 1


@pytest.mark.parametrize("search_lag", [0.0, 60.0], ids=["search-current", "search-lagging"])
def test_a_lost_response_is_recovered_without_a_second_customer(
    stripe: StripeStandIn,
    connector: StripeConnector,
    transport: RecordingTransport,
    search_lag: float,
) -> None:
    stripe.faults = Faults(lost_response_rate=1.0)  # every new write applied, then dropped
    stripe.search_lag = search_lag  # a lagging search makes the key's replay do the work
    run, ledger = executor(connector)
    request = customer("acme")

    outcome = run.execute(effect(request))

    assert stripe.counts["customer"] == 1
    assert outcome.external_id == stripe.objects("customer")[0]["id"]
    assert outcome.replayed
    entry = ledger.get(request.idempotency_key)
    assert entry is not None and entry.status == "done" and entry.attempts == 2
    last, answer = transport.exchanges[-1]
    if search_lag:  # search could not see it yet: Stripe replayed the keyed create
        assert (last.url.path, answer and answer.headers["Idempotent-Replayed"]) == (
            "/v1/customers",
            "true",
        )
    else:  # search found it; nothing was sent again
        assert last.url.path == "/v1/customers/search"


def test_lost_responses_while_invoicing_leave_one_item_and_one_finalised_invoice(
    stripe: StripeStandIn, connector: StripeConnector
) -> None:
    payer = connector.write(customer("acme")).external_id
    stripe.faults = Faults(lost_response_rate=1.0)  # every create and the finalise are lost
    run, _ = executor(connector)
    line = {"id": "l1", "customer": payer, "amount": 150_000, "currency": "EUR"}
    run.execute(effect(WriteRequest("invoiceitem", "create", line, "item-1")))
    invoice = WriteRequest(
        "invoice",
        "create",
        {"id": "inv-1", "customer": payer, "currency": "EUR", "payment_terms_days": 14},
        effect_key("stripe", "issue_invoice", "inv-1"),
    )

    outcome = run.execute(effect(invoice))

    assert (stripe.counts["invoiceitem"], stripe.counts["invoice"]) == (1, 1)
    assert outcome.result["status"] == "issued"
    assert outcome.result["gross"] == outcome.result["amount_due"] == 150_000
    assert outcome.result["currency"] == "EUR"
    assert [e["type"] for e in stripe.events()].count("invoice.finalized") == 1


def test_after_the_key_expires_the_look_up_still_prevents_a_duplicate(
    stripe: StripeStandIn, connector: StripeConnector, clock: Clock
) -> None:
    stripe.faults = Faults(lost_response_rate=1.0)
    ledger = MemoryLedger()
    vendors = {"stripe": ConnectorVendor(connector)}
    once = RetryPolicy(maximum_attempts=1)
    request = customer("acme")
    with pytest.raises(EffectFailed):  # the worker gives up with the effect in doubt
        EffectExecutor(ledger, vendors, once, sleep=lambda _: None).execute(effect(request))

    clock.now = T0 + 25 * 3600  # Stripe has forgotten the key by the time work resumes
    stripe.faults = Faults()
    outcome = EffectExecutor(ledger, vendors, sleep=lambda _: None).execute(effect(request))

    assert stripe.counts["customer"] == 1
    assert outcome.replayed and outcome.external_id == stripe.objects("customer")[0]["id"]
    again = connector.write(request)  # what resending blindly would have done
    assert not again.replayed and stripe.counts["customer"] == 2


# -- error classification -----------------------------------------------------------------


def test_throttling_is_retryable_after_the_vendors_retry_after(
    stripe: StripeStandIn, connector: StripeConnector
) -> None:
    stripe.faults = Faults(throttle_rate=1.0, retry_after=0.25)

    with pytest.raises(TransientError) as throttled:
        connector.write(customer("acme"))

    assert throttled.value.retryable
    assert throttled.value.retry_after == 0.25
    assert stripe.counts["customer"] == 0


def test_test_mode_rate_limit_answers_429_with_a_wait(
    clock: Clock, transport: RecordingTransport
) -> None:
    with StripeStandIn(api_key=API_KEY, clock=clock) as limited:
        client = StripeConnector(
            base_url=limited.url, credentials={"api_key": API_KEY}, transport=transport
        )
        refusals: list[TransientError] = []
        for _ in range(40):
            try:
                client.request("GET", "/v1/customers")
            except TransientError as exc:
                refusals.append(exc)
        client.close()

    assert refusals, "40 reads at once must exceed 25 a second"
    assert all(0 < (e.retry_after or 0) <= 1 for e in refusals)
    answers = [r for _, r in transport.exchanges if r is not None and r.status_code == 429]
    assert answers[0].json()["error"]["code"] == "rate_limit"


def test_server_errors_are_retryable_and_apply_nothing(
    stripe: StripeStandIn, connector: StripeConnector
) -> None:
    stripe.faults = Faults(error_rate=1.0)

    with pytest.raises(TransientError) as failed:
        connector.write(customer("acme"))

    assert failed.value.retryable and "api_error" in str(failed.value)
    assert stripe.counts["customer"] == 0


def test_a_bad_request_is_not_retryable(connector: StripeConnector) -> None:
    line = {"customer": "cus_missing", "amount": 100, "currency": "EUR"}

    with pytest.raises(InvalidInput, match="resource_missing") as refused:
        connector.write(WriteRequest("invoiceitem", "create", line, "item-x"))

    assert not refused.value.retryable
    assert refused.value.retry_after is None


def test_requests_without_a_test_key_are_refused(
    stripe: StripeStandIn, transport: RecordingTransport
) -> None:
    with httpx.Client(base_url=stripe.url, transport=transport) as client:
        with transport.malformed_on_purpose():
            missing = client.get("/v1/customers")
        live = client.get("/v1/customers", headers={"Authorization": "Bearer sk_live_abcdef123456"})

    assert [missing.status_code, live.status_code] == [401, 401]
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert "Invalid API Key" in live.json()["error"]["message"]


# -- webhooks -----------------------------------------------------------------------------


class _Receiver:
    """A webhook endpoint on loopback that keeps what it was sent."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.deliveries.append((dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/stripe/webhooks"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    endpoint = _Receiver()
    yield endpoint
    endpoint.close()


@pytest.fixture
def delivery(
    stripe: StripeStandIn, connector: StripeConnector, receiver: _Receiver
) -> tuple[dict[str, str], bytes]:
    """One real delivery of ``customer.created``, signed by the stand-in."""
    stripe.webhook_url = receiver.url
    stripe.webhook_secret = WEBHOOK_SECRET
    connector.write(customer("acme"))
    assert stripe.flush_webhooks()
    assert len(receiver.deliveries) == 1
    return receiver.deliveries[0]


def test_a_webhook_signed_by_stripe_is_accepted(
    connector: StripeConnector, delivery: tuple[dict[str, str], bytes]
) -> None:
    headers, body = delivery

    events = connector.verify_webhook(headers, body, datetime.fromtimestamp(T0, UTC))

    assert [(e.event_type, e.object) for e in events] == [("customer.created", "customer")]
    assert events[0].data["metadata"]["accord_id"] == "acme"
    assert events[0].occurred_at == datetime.fromtimestamp(T0, UTC)


def test_a_tampered_webhook_is_rejected_naming_the_header(
    connector: StripeConnector, delivery: tuple[dict[str, str], bytes]
) -> None:
    headers, body = delivery
    forged = body.replace(b'"acme"', b'"evil"')

    with pytest.raises(InvalidInput, match="Stripe-Signature") as rejected:
        connector.verify_webhook(headers, forged, datetime.fromtimestamp(T0, UTC))
    assert rejected.value.field == "Stripe-Signature"
    with pytest.raises(InvalidInput, match="Stripe-Signature"):
        connector.verify_webhook({}, body, datetime.fromtimestamp(T0, UTC))


@pytest.mark.parametrize("skew", [-301, 301])
def test_a_webhook_outside_the_tolerance_is_rejected(
    connector: StripeConnector, delivery: tuple[dict[str, str], bytes], skew: int
) -> None:
    headers, body = delivery
    at = datetime.fromtimestamp(T0, UTC) + timedelta(seconds=skew)

    with pytest.raises(InvalidInput, match="tolerance") as rejected:
        connector.verify_webhook(headers, body, at)
    assert rejected.value.field == "Stripe-Signature"
    inside = datetime.fromtimestamp(T0, UTC) + timedelta(seconds=skew - 2 if skew > 0 else skew + 2)
    assert connector.verify_webhook(headers, body, inside)


def test_a_webhook_signed_with_another_secret_is_rejected(connector: StripeConnector) -> None:
    body = json.dumps({"id": "evt_1", "type": "x", "created": T0, "data": {"object": {}}}).encode()
    headers = {"stripe-signature": sign_payload(body, "whsec_someone_else", T0)}

    with pytest.raises(InvalidInput, match="no signature matches"):
        connector.verify_webhook(headers, body, datetime.fromtimestamp(T0, UTC))


# -- the whole dialect, against Stripe's description ----------------------------------------


def test_connector_and_stand_in_speak_stripes_openapi(
    openapi: OpenAPI | None,
    stripe: StripeStandIn,
    connector: StripeConnector,
    transport: RecordingTransport,
    receiver: _Receiver,
) -> None:
    if openapi is None:
        pytest.skip(
            f"Stripe's OpenAPI description is not at {SPEC} (../shared/specs beside the "
            "repository), so no exchange in this module was validated against it"
        )
    stripe.webhook_url = receiver.url
    stripe.webhook_secret = WEBHOOK_SECRET
    payer = connector.write(customer("acme")).external_id
    assert payer is not None
    connector.write(customer("acme"))  # replayed
    connector.write(
        WriteRequest("customer", "update", {"email": "billing@example.com"}, "upd-1", payer)
    )
    for n, amount in enumerate((120_000, 30_000)):
        line = {"id": f"l{n}", "customer": payer, "amount": amount, "currency": "EUR"}
        connector.write(WriteRequest("invoiceitem", "create", line, f"item-{n}"))
    invoice = connector.write(
        WriteRequest(
            "invoice", "create", {"id": "inv-1", "customer": payer, "currency": "EUR"}, "i1"
        )
    )
    memo = {"id": "cm-1", "invoice": invoice.external_id, "amount": 10_000, "currency": "EUR"}
    connector.write(WriteRequest("credit_note", "create", {**memo, "reason": "duplicate"}, "c1"))
    assert connector.lookup(customer("acme")) is not None
    paid = connector.write(
        WriteRequest(
            "payment_intent",
            "create",
            {"id": "pay-1", "customer": payer, "amount": 5_000, "currency": "EUR"}
            | {"payment_method": "pm_card_visa"},
            "p1",
        )
    )
    assert paid.result["status"] == "succeeded"
    with httpx.Client(
        base_url=stripe.url, transport=transport, headers={"Authorization": f"Bearer {API_KEY}"}
    ) as raw:
        # the invoice's own payment intent pays it
        intent = raw.get(f"/v1/invoices/{invoice.external_id}").json()["payment_intent"]
        declined = raw.post(
            f"/v1/payment_intents/{intent}/confirm",
            data={"payment_method": "pm_card_chargeDeclined"},
        )
        confirmed = raw.post(
            f"/v1/payment_intents/{intent}/confirm", data={"payment_method": "pm_card_visa"}
        )
        raw.get("/v1/invoices", params={"customer": payer, "status": "paid"})
        raw.get("/v1/invoices/search", params={"query": "status:'paid'"})
        raw.get("/v1/events", params={"type": "invoice.*", "limit": 3})
        raw.get("/v1/customers/cus_nobody")
        raw.post(f"/v1/invoices/{invoice.external_id}/finalize")  # 400: not a draft
    assert (declined.status_code, confirmed.status_code) == (402, 200)
    assert declined.json()["error"]["code"] == "card_declined"
    final = mapping.invoice_fields(stripe.objects("invoice")[0])
    assert (final["status"], final["gross"], final["credited"], final["amount_due"]) == (
        "paid",
        150_000,
        10_000,
        0,
    )
    assert stripe.flush_webhooks()

    event_schema = openapi.spec / "components" / "schemas" / "event"
    validator = oas30_read_schema_validators_factory.create(openapi.spec, event_schema)
    for _headers, body in receiver.deliveries:
        validator.validate(json.loads(body))
    for event in stripe.events():
        validator.validate(event)
    assert {"invoice.finalized", "invoice.paid", "payment_intent.succeeded"} <= {
        e["type"] for e in stripe.events()
    }
    # the transport fixture validates every recorded exchange when this test ends
    answered = {response.status_code for _, response in transport.exchanges if response}
    assert answered == {200, 400, 402, 404}


def test_the_conformance_check_catches_stray_parameters_and_wrong_shapes(
    openapi: OpenAPI | None,
) -> None:
    if openapi is None:
        pytest.skip(f"Stripe's OpenAPI description is not at {SPEC}")
    request = httpx.Request(
        "POST",
        "http://stand-in/v1/customers",
        headers={"Authorization": f"Bearer {API_KEY}"},
        data={"name": "Acme", "nickname": "not Stripe's", "metadata[accord_id]": "a-1"},
    )
    wrong = {"id": "cus_1", "object": "invoice", "created": T0, "livemode": False, "balance": None}
    recorded = RecordingTransport()
    recorded.exchanges.append((request, httpx.Response(200, json=wrong, request=request)))
    recorded.close()

    problems = "\n".join(conformance_problems(openapi, recorded))

    assert "undeclared parameters ['nickname']" in problems
    assert "object: 'invoice' is not one of ['customer']" in problems
    assert "balance: None for not nullable" in problems  # null only where Stripe allows it


# -- pure parts ----------------------------------------------------------------------------


def test_form_encoding_round_trips_stripes_bracket_notation() -> None:
    params = {
        "name": "Ünïcode & Co",
        "metadata": {"accord_id": "a-1", "note": "x=y"},
        "expand": ["lines", "customer"],
        "auto_advance": False,
        "skipped": None,
    }
    pairs = encode_form(params)

    assert ("metadata[accord_id]", "a-1") in pairs and ("expand[1]", "customer") in pairs
    decoded = parse_form(urlencode(pairs))
    assert decoded == {
        "name": "Ünïcode & Co",
        "metadata": {"accord_id": "a-1", "note": "x=y"},
        "expand": ["lines", "customer"],
        "auto_advance": "false",
    }


def test_money_maps_to_stripe_units_and_back() -> None:
    assert mapping.to_stripe_amount(1999, "EUR") == 1999
    assert mapping.to_stripe_amount(500, "ISK") == 50_000  # Stripe keeps ISK at two decimals
    assert mapping.from_stripe_amount(50_000, "isk") == 500
    with pytest.raises(InvalidInput):
        mapping.from_stripe_amount(50_001, "isk")
    assert mapping.to_stripe_currency("JPY") == "jpy"
    assert mapping.from_stripe_currency("jpy") == "JPY"


def test_a_stripe_invoice_maps_to_canonical_fields() -> None:
    invoice = {
        "id": "in_1",
        "object": "invoice",
        "customer": {"id": "cus_1", "object": "customer"},
        "currency": "gbp",
        "status": "open",
        "number": "ABC-0001",
        "total": 12_000,
        "amount_paid": 2_000,
        "amount_remaining": 9_000,
        "pre_payment_credit_notes_amount": 1_000,
        "post_payment_credit_notes_amount": 0,
        "due_date": T0,
        "status_transitions": {"finalized_at": T0},
        "metadata": {"accord_id": "inv-9"},
    }

    fields = mapping.summary(invoice)

    assert fields == {
        "object": "invoice",
        "external_id": "in_1",
        "id": "inv-9",
        "number": "ABC-0001",
        "customer_external_id": "cus_1",
        "currency": "GBP",
        "status": "partially_paid",
        "gross": 12_000,
        "amount_paid": 2_000,
        "amount_due": 9_000,
        "credited": 1_000,
        "issue_date": "2023-11-14",
        "due_date": "2023-11-14",
    }


def test_a_canonical_account_maps_to_customer_parameters() -> None:
    params = mapping.customer_params({"id": "acc-1", "legal_name": "Acme Ltd", "domain": "x.io"})

    assert params == {"name": "Acme Ltd", "metadata": {"accord_id": "acc-1"}}
    with pytest.raises(InvalidInput, match="legal_name"):
        mapping.customer_params({"id": "acc-2"})
