"""NetSuite token-based authentication: OAuth 1.0a signatures with HMAC-SHA256 (RFC 5849).

Pure functions, shared by the connector (which signs) and the stand-in (which
verifies), so that both follow one reading of the RFC:

* the **base string** is ``METHOD&enc(base URL)&enc(normalised parameters)``
  (RFC 5849 §3.4.1), where the base URL is the scheme and host in lower case,
  the port only when it is not the scheme's default, and the path, without the
  query; the parameters are every query parameter plus every ``oauth_*``
  parameter of the header except ``oauth_signature`` and ``realm``, each name
  and value percent-encoded (§3.6: only ``A-Z a-z 0-9 - . _ ~`` stay as they
  are), sorted by name and then by value, joined as ``name=value`` with ``&``.
  NetSuite sends JSON bodies, which are never part of the base string (only
  ``application/x-www-form-urlencoded`` ones would be);
* the **key** is ``enc(consumer secret)&enc(token secret)``; the signature is
  the base64 of the HMAC-SHA256 digest of the base string under that key;
* the **header** is ``Authorization: OAuth realm="ACCOUNT_ID",
  oauth_consumer_key="…", oauth_token="…", oauth_signature_method="HMAC-SHA256",
  oauth_timestamp="…", oauth_nonce="…", oauth_version="1.0",
  oauth_signature="…"`` with every value percent-encoded. The realm is the
  NetSuite account id in upper case, with ``_SB1`` for a sandbox (the host
  writes it ``1234567-sb1``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from accord.errors import InvalidInput

__all__ = [
    "SIGNATURE_METHOD",
    "OAuthParameters",
    "authorization_header",
    "base_string",
    "base_url",
    "parse_authorization",
    "percent_encode",
    "sign",
]

SIGNATURE_METHOD = "HMAC-SHA256"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HEADER_PARAM = re.compile(r'\s*([A-Za-z0-9_]+)\s*=\s*"([^"]*)"\s*(?:,|$)')


def percent_encode(value: str) -> str:
    """RFC 5849 §3.6: UTF-8, then every byte but ``A-Z a-z 0-9 - . _ ~`` as ``%XX``."""
    return quote(value.encode("utf-8"), safe="-._~")


def base_url(url: str) -> str:
    """RFC 5849 §3.4.1.2: scheme and host in lower case, no default port, no query."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    port = parts.port
    authority = host if port is None or _DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    return f"{scheme}://{authority}{parts.path or '/'}"


def base_string(
    method: str, url: str, oauth: Mapping[str, str], form: Iterable[tuple[str, str]] = ()
) -> str:
    """The signature base string of a request to ``url`` (query included) with ``oauth``.

    ``oauth`` holds the protocol parameters (``oauth_*``); ``realm`` and
    ``oauth_signature`` are left out as the RFC requires, whether given or not.
    ``form`` are the parameters of an ``application/x-www-form-urlencoded`` body
    (never NetSuite's case: its bodies are JSON).
    """
    pairs: list[tuple[str, str]] = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    pairs += list(form)
    pairs += [(k, v) for k, v in oauth.items() if k not in ("realm", "oauth_signature")]
    encoded = sorted((percent_encode(k), percent_encode(v)) for k, v in pairs)
    normalised = "&".join(f"{k}={v}" for k, v in encoded)
    return "&".join((method.upper(), percent_encode(base_url(url)), percent_encode(normalised)))


def sign(base: str, consumer_secret: str, token_secret: str) -> str:
    """HMAC-SHA256 of ``base`` under ``enc(consumer_secret)&enc(token_secret)``, base64."""
    key = f"{percent_encode(consumer_secret)}&{percent_encode(token_secret)}"
    digest = hmac.new(key.encode(), base.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


@dataclass(frozen=True, slots=True)
class OAuthParameters:
    """The parameters of one ``Authorization: OAuth …`` header."""

    realm: str
    consumer_key: str
    token: str
    signature_method: str
    timestamp: str
    nonce: str
    version: str
    signature: str

    def protocol(self) -> dict[str, str]:
        """The ``oauth_*`` parameters that enter the base string."""
        return {
            "oauth_consumer_key": self.consumer_key,
            "oauth_token": self.token,
            "oauth_signature_method": self.signature_method,
            "oauth_timestamp": self.timestamp,
            "oauth_nonce": self.nonce,
            "oauth_version": self.version,
        }


def authorization_header(
    method: str,
    url: str,
    *,
    realm: str,
    consumer_key: str,
    consumer_secret: str,
    token: str,
    token_secret: str,
    timestamp: int,
    nonce: str,
) -> str:
    """The ``Authorization`` header value of one signed request."""
    oauth = {
        "oauth_consumer_key": consumer_key,
        "oauth_token": token,
        "oauth_signature_method": SIGNATURE_METHOD,
        "oauth_timestamp": str(timestamp),
        "oauth_nonce": nonce,
        "oauth_version": "1.0",
    }
    oauth["oauth_signature"] = sign(base_string(method, url, oauth), consumer_secret, token_secret)
    fields: Iterable[str] = (f'{k}="{percent_encode(v)}"' for k, v in oauth.items())
    return f'OAuth realm="{realm}", ' + ", ".join(fields)


def parse_authorization(header: str) -> OAuthParameters:
    """Read an ``OAuth …`` header; refuses one that lacks a parameter or repeats one."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "oauth":
        raise InvalidInput("not an OAuth header", record="request", field="Authorization")
    found: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        match = _HEADER_PARAM.match(rest, position)
        if match is None:
            raise InvalidInput(
                f"unreadable OAuth parameters at {rest[position : position + 20]!r}",
                record="request",
                field="Authorization",
            )
        name, value = match.group(1), unquote(match.group(2))
        if name in found:
            raise InvalidInput(f"{name} given twice", record="request", field="Authorization")
        found[name] = value
        position = match.end()
    names = (
        "realm",
        "oauth_consumer_key",
        "oauth_token",
        "oauth_signature_method",
        "oauth_timestamp",
        "oauth_nonce",
        "oauth_signature",
    )
    missing = [name for name in names if not found.get(name)]
    if missing:
        raise InvalidInput(f"missing {', '.join(missing)}", record="request", field="Authorization")
    return OAuthParameters(
        realm=found["realm"],
        consumer_key=found["oauth_consumer_key"],
        token=found["oauth_token"],
        signature_method=found["oauth_signature_method"],
        timestamp=found["oauth_timestamp"],
        nonce=found["oauth_nonce"],
        version=found.get("oauth_version", "1.0"),
        signature=found["oauth_signature"],
    )
