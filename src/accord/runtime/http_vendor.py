"""An effect target spoken to over HTTP with an ``Idempotency-Key`` header."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx

from accord.errors import AccordError, InvalidInput, TransientError
from accord.jsontext import compiled
from accord.runtime.effects import Effect, EffectOutcome, Vendor
from accord.tracing import TracingTransport

__all__ = ["IdempotentHttpVendor"]

#: How request bodies are written (built once; ``json.dumps`` with options builds one per call).
_BODY_JSON = compiled(json.JSONEncoder(sort_keys=True, default=str))


class IdempotentHttpVendor(Vendor):
    """Creates objects with ``POST`` + ``Idempotency-Key``; finds them again by key.

    The transport is injectable, so tests pass a plain function instead of
    patching; timeouts and connection drops are retryable, because a lost
    response is exactly what the ledger's look-up resolves.
    """

    def __init__(
        self,
        base_url: str,
        *,
        path: str = "/v1/objects",
        transport: httpx.BaseTransport | None = None,
        timeout: float = 5.0,
    ) -> None:
        self._transport = TracingTransport(transport)
        self._client = httpx.Client(base_url=base_url, transport=self._transport, timeout=timeout)
        self._path = path
        # the batch call goes straight to the transport (see perform_many)
        template = self._client.build_request("POST", f"{path}/batch")
        self._batch_url = template.url
        self._batch_extensions = template.extensions

    def close(self) -> None:
        self._client.close()

    def _classify(self, response: httpx.Response) -> AccordError:
        text = response.text[:300]
        if response.status_code == 429:
            after = response.headers.get("Retry-After")
            return TransientError(
                f"429 throttled: {text}", retry_after=float(after) if after else None
            )
        if response.status_code >= 500:
            return TransientError(f"{response.status_code}: {text}")
        return InvalidInput(f"{response.status_code}: {text}", record=str(response.url))

    def perform(self, effect: Effect) -> EffectOutcome:
        body = _BODY_JSON(dict(effect.request))
        try:
            response = self._client.post(
                self._path,
                content=body,
                headers={"Idempotency-Key": effect.key, "Content-Type": "application/json"},
            )
        except httpx.TransportError as exc:  # timeouts, resets, dropped responses
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise self._classify(response)
        data: dict[str, Any] = response.json()
        return EffectOutcome(str(data["id"]), data)

    batch_size = 100

    def perform_many(self, batch: Sequence[Effect]) -> list[EffectOutcome | AccordError]:
        """``POST {path}/batch`` with one idempotency key per item."""
        items = [{"idempotency_key": e.key, "body": dict(e.request)} for e in batch]
        # Straight to the transport (tracing, connection pool, timeout): the
        # client's own layers (cookies, auth, redirects, hooks) cost more than
        # the rest of the call, on a request that needs none of them.
        request = httpx.Request(
            "POST",
            self._batch_url,
            content=_BODY_JSON({"items": items}),
            headers={"Content-Type": "application/json"},
            extensions=self._batch_extensions,
        )
        try:
            response = self._transport.handle_request(request)
            try:
                response.read()
            finally:
                response.close()
        except httpx.TransportError as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc
        response.request = request
        if response.status_code != 200:
            raise self._classify(response)
        results: list[EffectOutcome | AccordError] = []
        for effect, item in zip(batch, response.json()["results"], strict=True):
            if "error" in item:
                results.append(InvalidInput(str(item["error"]), record=effect.key))
            else:
                results.append(EffectOutcome(str(item["id"]), item))
        return results

    def lookup(self, effect: Effect) -> EffectOutcome | None:
        try:
            response = self._client.get(self._path, params={"idempotency_key": effect.key})
        except httpx.TransportError as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise self._classify(response)
        found = response.json().get("data") or []
        if not found:
            return None
        return EffectOutcome(str(found[0]["id"]), found[0], replayed=True)
