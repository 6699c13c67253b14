"""Did the sender really send this? Read the ``Authentication-Results`` headers (RFC 8601) that the hub's own mail
servers added, and only those, into one typed ``Authentication``: ``pass``, ``fail`` or ``none``.

A header is believed only when its authserv-id (the first word, naming the server that did the checks) is one the
config lists in ``[security] trusted_authserv_ids``; anyone can write an ``Authentication-Results`` header into the
mail they send, so every other header is ignored. Servers only ever add headers at the top, so for each method
(dmarc, dkim, spf, compauth) the topmost trusted result is the one the hub's own server wrote: a copy further down
claiming the same id was there before the message reached the hub and is ignored. Exchange Online writes its
header without an authserv-id; list ``exchange-online`` to trust those.

``pass`` is DMARC pass (Exchange Online's ``bestguesspass``, or ``compauth=pass`` where it gives no DMARC, count
too); where the domain publishes no DMARC, a DKIM pass whose ``header.d`` or an SPF pass whose ``smtp.mailfrom``
domain is aligned with the From domain. ``fail`` is DMARC fail (or ``compauth=fail`` with no DMARC result).
``none`` is everything else: no trusted header, or nothing that decides either way. Pure: no DNS, no clock.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["AuthResult", "Authentication", "MethodResult", "authenticate", "parse_authentication_results",
           "EXCHANGE_ONLINE", "NOT_CONFIGURED"]

#: The name to list in ``trusted_authserv_ids`` for Exchange Online's headers, which carry no authserv-id.
EXCHANGE_ONLINE = "exchange-online"


class AuthResult(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NONE = "none"


@dataclass(frozen=True)
class MethodResult:
    """One ``method=result`` item of a header with the properties that matter for alignment."""

    method: str                      # "dmarc", "dkim", "spf", "compauth", ...
    result: str                      # "pass", "fail", "softfail", "none", "bestguesspass", ...
    properties: tuple[tuple[str, str], ...] = ()   # ("header.from", "example.org"), ("smtp.mailfrom", ...)

    def prop(self, name: str) -> str:
        return next((v for k, v in self.properties if k == name), "")


@dataclass(frozen=True)
class AuthenticationResults:
    """One parsed header: who wrote it and what it says."""

    authserv_id: str                 # lower-case; "" when the header has none (Exchange Online)
    results: tuple[MethodResult, ...]


@dataclass(frozen=True)
class Authentication:
    result: AuthResult
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"result": self.result.value, "detail": self.detail}


NOT_CONFIGURED = Authentication(AuthResult.NONE, "no trusted_authserv_ids configured")

# A comment in parentheses (RFC 5322 CFWS), possibly nested one level, as servers write "(sender IP is ...)".
_COMMENT = re.compile(r"\((?:[^()\\]|\\.|\([^()]*\))*\)")
_METHOD = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(?:/\s*\d+)?\s*=\s*([A-Za-z0-9_-]+)(.*)$", re.DOTALL)
_PROPERTY = re.compile(r"([A-Za-z0-9_-]+\.[A-Za-z0-9_.-]+)\s*=\s*(\"[^\"]*\"|[^\s;]+)")
_VERSION = re.compile(r"^\d+$")


def parse_authentication_results(value: str) -> AuthenticationResults | None:
    """One header value, or None when it is too broken to say who wrote it."""
    text = _COMMENT.sub(" ", value.replace("\r", " ").replace("\n", " ")).strip()
    if not text:
        return None
    items = [item.strip() for item in text.split(";")]
    first = items[0]
    authserv_id = ""
    if _METHOD.match(first) and "=" in first.split()[0]:
        # No authserv-id at all: the header starts with its first result (Exchange Online writes it so).
        body = items
    else:
        words = first.split()
        if not words:
            return None
        authserv_id = words[0].lower().rstrip(".")
        if len(words) > 1 and not _VERSION.match(words[1]):
            return None
        body = items[1:]
    results: list[MethodResult] = []
    for item in body:
        match = _METHOD.match(item)
        if not match:
            continue   # "none" (no results), or junk: nothing to learn from it
        method, result, rest = match.group(1).lower(), match.group(2).lower(), match.group(3)
        props = tuple((k.lower(), v.strip('"').lower()) for k, v in _PROPERTY.findall(rest))
        results.append(MethodResult(method, result, props))
    return AuthenticationResults(authserv_id, tuple(results))


def _domain(value: str) -> str:
    """The domain of an address or a bare domain ("@example.org" and "user@example.org" both give example.org)."""
    return value.rsplit("@", 1)[-1].strip().strip("<>").rstrip(".").lower()


def aligned(a: str, b: str) -> bool:
    """Relaxed alignment (RFC 7489 3.1): the same domain, or one a subdomain of the other. Without the public
    suffix list this is stricter than DMARC's organisational-domain rule, never looser."""
    a, b = _domain(a), _domain(b)
    if not a or not b:
        return False
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def _trusted(headers: Iterable[tuple[str, str]], trusted_ids: frozenset[str]) -> list[AuthenticationResults]:
    out = []
    for name, value in headers:
        if name.lower() != "authentication-results":
            continue
        parsed = parse_authentication_results(value)
        if parsed is None:
            continue
        server = parsed.authserv_id or EXCHANGE_ONLINE
        if server in trusted_ids:
            out.append(parsed)
    return out


def authenticate(headers: Sequence[tuple[str, str]], from_address: str | None,
                 trusted_authserv_ids: Iterable[str]) -> Authentication:
    """The verdict on a message whose headers (in order, top first) are ``headers`` and whose From address is
    ``from_address``, believing only servers in ``trusted_authserv_ids``."""
    trusted_ids = frozenset(i.strip().lower().rstrip(".") for i in trusted_authserv_ids if i.strip())
    if not trusted_ids:
        return NOT_CONFIGURED
    found = _trusted(headers, trusted_ids)
    if not found:
        return Authentication(AuthResult.NONE, "no Authentication-Results header from a trusted server")
    # Topmost result per method: the hub's server wrote it last; lower copies came with the message.
    first: dict[str, list[MethodResult]] = {}
    for header in found:
        seen_here: dict[str, list[MethodResult]] = {}
        for result in header.results:
            seen_here.setdefault(result.method, []).append(result)
        for method, results in seen_here.items():
            first.setdefault(method, results)
    from_domain = _domain(from_address or "")

    dmarc = first.get("dmarc", [])
    if dmarc:
        outcome = dmarc[0].result
        if outcome in ("pass", "bestguesspass"):
            return Authentication(AuthResult.PASS, f"dmarc={outcome}")
        if outcome == "fail":
            return Authentication(AuthResult.FAIL, "dmarc=fail")
        # none (no DMARC record), temperror, permerror: fall through to DKIM and SPF alignment.
    compauth = first.get("compauth", [])
    if compauth and compauth[0].result == "pass":
        return Authentication(AuthResult.PASS, "compauth=pass")
    if compauth and compauth[0].result == "fail" and not dmarc:
        return Authentication(AuthResult.FAIL, "compauth=fail")
    if not from_domain:
        return Authentication(AuthResult.NONE, "no From address to align with")
    for result in first.get("dkim", []):
        signer = result.prop("header.d") or result.prop("header.i")
        if result.result == "pass" and aligned(signer, from_domain):
            return Authentication(AuthResult.PASS, "dkim=pass, aligned with From")
    for result in first.get("spf", []):
        envelope = result.prop("smtp.mailfrom") or result.prop("smtp.helo")
        if result.result == "pass" and aligned(envelope, from_domain):
            return Authentication(AuthResult.PASS, "spf=pass, aligned with From")
    said = ", ".join(f"{m}={r[0].result}" for m, r in first.items() if r) or "no results"
    return Authentication(AuthResult.NONE, f"neither DMARC pass nor an aligned DKIM or SPF pass ({said})")
