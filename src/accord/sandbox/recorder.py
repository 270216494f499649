"""A minimal vendor stand-in that records writes and honours idempotency keys.

It speaks plain JSON over real HTTP: ``POST /v1/objects`` with an
``Idempotency-Key`` header creates an object once (the same key and body
returns the stored object; the same key with another body is a 409, as Stripe
does), ``GET /v1/objects?idempotency_key=K`` finds an earlier write, ``GET
/v1/stats`` reports counts. Faults are injected per request: an error rate
(503), 429 with ``Retry-After``, added latency, and lost responses — the write
is applied and the connection is closed without an answer, the fault that
makes exactly-once effects hard.

Its state is kept in a SQLite file when one is given, so that a test can kill
and restart the workers that call it and still count, at the receiving end,
that every effect happened exactly once.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

__all__ = ["Faults", "RecorderServer"]

#: How an item's body is stored and compared (built once, not per item).
_BODY_JSON = json.JSONEncoder(sort_keys=True)


@dataclass(frozen=True, slots=True)
class Faults:
    """Per-request fault probabilities of the stand-in."""

    error_rate: float = 0.0
    """Share of requests answered 503 without applying anything."""
    throttle_rate: float = 0.0
    """Share of requests answered 429 with ``Retry-After``."""
    retry_after: float = 0.05
    """Seconds named in ``Retry-After`` on a 429."""
    lost_response_rate: float = 0.0
    """Share of writes applied and then left unanswered (connection dropped)."""
    latency: float = 0.0
    """Seconds added to every request."""


class _State:
    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS objects (id INTEGER PRIMARY KEY, key TEXT UNIQUE, "
            "digest TEXT, body TEXT, created REAL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS requests (kind TEXT PRIMARY KEY, n INTEGER NOT NULL)"
        )
        self._lock = threading.Lock()

    def count(self, kind: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO requests VALUES (?, 1) ON CONFLICT(kind) DO UPDATE SET n = n + 1",
                (kind,),
            )

    def create(self, key: str, body: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            return self._create(key, body)

    def create_many(self, items: list[tuple[str, str]]) -> list[tuple[int, dict[str, Any]]]:
        """Many creates and their write counts in one transaction, as a vendor's
        collection endpoint applies a batch."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                answers = [self._create(key, body) for key, body in items]
                self._db.execute(
                    "INSERT INTO requests VALUES ('write', ?)"
                    " ON CONFLICT(kind) DO UPDATE SET n = n + excluded.n",
                    (len(items),),
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return answers

    def _create(self, key: str, body: str) -> tuple[int, dict[str, Any]]:
        created = self._db.execute(
            "INSERT INTO objects (key, digest, body, created) VALUES (?, '', ?, ?)"
            " ON CONFLICT (key) DO NOTHING RETURNING id",
            (key, body, time.time()),
        ).fetchone()
        if created is not None:
            return 200, {"id": f"obj_{created[0]}", "idempotency_key": key}
        row = self._db.execute("SELECT id, body FROM objects WHERE key = ?", (key,)).fetchone()
        if row is not None:
            if row[1] != body:
                return 409, {
                    "error": {
                        "type": "idempotency_error",
                        "message": "key reused with another body",
                    }
                }
            return 200, {"id": f"obj_{row[0]}", "idempotency_key": key, "replayed": True}
        raise RuntimeError(f"object {key!r} neither created nor found")  # pragma: no cover

    def find(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT id FROM objects WHERE key = ?", (key,)).fetchone()
        return None if row is None else {"id": f"obj_{row[0]}", "idempotency_key": key}

    def stats(self) -> dict[str, Any]:
        with self._lock:
            objects = self._db.execute("SELECT COUNT(*) FROM objects").fetchone()[0]
            requests = dict(self._db.execute("SELECT kind, n FROM requests").fetchall())
        return {"objects": objects, "requests": requests}


class RecorderServer:
    """The stand-in, served on loopback in a background thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        state_path: str = ":memory:",
        faults: Faults | None = None,
        seed: int | None = None,
    ) -> None:
        self.faults = faults or Faults()
        self._state = _State(state_path)
        self._random = random.Random(seed)
        self._random_lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

            def _send(
                self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _fault(self) -> str | None:
                faults = server.faults
                if faults.latency:
                    time.sleep(faults.latency)
                roll = server._roll()
                if roll < faults.error_rate:
                    return "error"
                if roll < faults.error_rate + faults.throttle_rate:
                    return "throttle"
                return None

            def _batch(self, body: str) -> None:
                """Many idempotent creates in one call, as collection endpoints do."""
                server._state.count("batch")
                fault = self._fault()
                if fault == "error":
                    self._send(503, {"error": {"type": "api_error", "message": "unavailable"}})
                    return
                if fault == "throttle":
                    self._send(
                        429,
                        {"error": {"type": "rate_limit"}},
                        {"Retry-After": str(server.faults.retry_after)},
                    )
                    return
                items = json.loads(body or "{}").get("items", [])
                answers = server._state.create_many(
                    [
                        (str(item["idempotency_key"]), _BODY_JSON.encode(item.get("body")))
                        for item in items
                    ]
                )
                results = [
                    answer if status == 200 else {"error": answer["error"]}
                    for status, answer in answers
                ]
                if server._roll() < server.faults.lost_response_rate:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self._send(200, {"results": results})

            def do_GET(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                if url.path == "/v1/stats":
                    self._send(200, server._state.stats())
                    return
                if url.path != "/v1/objects":
                    self._send(404, {"error": {"type": "not_found", "message": url.path}})
                    return
                server._state.count("lookup")
                fault = self._fault()
                if fault == "error":
                    self._send(503, {"error": {"type": "api_error", "message": "unavailable"}})
                    return
                if fault == "throttle":
                    self._send(
                        429,
                        {"error": {"type": "rate_limit"}},
                        {"Retry-After": str(server.faults.retry_after)},
                    )
                    return
                key = parse_qs(url.query).get("idempotency_key", [""])[0]
                found = server._state.find(key)
                self._send(200, {"data": [found] if found else []})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                path = urlparse(self.path).path
                if path == "/v1/objects/batch":
                    self._batch(body)
                    return
                if path != "/v1/objects":
                    self._send(404, {"error": {"type": "not_found", "message": self.path}})
                    return
                key = self.headers.get("Idempotency-Key")
                if not key:
                    self._send(
                        400,
                        {
                            "error": {
                                "type": "invalid_request_error",
                                "message": "Idempotency-Key header required",
                            }
                        },
                    )
                    return
                server._state.count("write")
                fault = self._fault()
                if fault == "error":
                    self._send(503, {"error": {"type": "api_error", "message": "unavailable"}})
                    return
                if fault == "throttle":
                    self._send(
                        429,
                        {"error": {"type": "rate_limit"}},
                        {"Retry-After": str(server.faults.retry_after)},
                    )
                    return
                status, answer = server._state.create(key, body)
                if status == 200 and server._roll() < server.faults.lost_response_rate:
                    self.close_connection = True  # applied, but the caller never hears of it
                    self.connection.shutdown(2)
                    return
                self._send(status, answer)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    def _roll(self) -> float:
        with self._random_lock:
            return self._random.random()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def stats(self) -> dict[str, Any]:
        return self._state.stats()

    def start(self) -> RecorderServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> RecorderServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
