"""A real OAuth2 token endpoint and an SMTP server that checks bearer tokens against it, for the XOAUTH2 tests.

``TokenServer`` is a small ``http.server`` on 127.0.0.1 that speaks Google's refresh-token grant (``POST /token``
with grant_type, client_id, client_secret, refresh_token) and issues access tokens that expire after ``lifetime``
seconds of its own clock; ``GET /tokeninfo?access_token=...`` says whether a token is valid now. The clock can be
moved forward (``advance``), and the tests hand the same clock to the token provider, so "an hour later" takes no
time. ``revoke_all`` makes every issued token invalid at once, as a password change or withdrawn consent would.
``start_oauth_smtp`` starts aiosmtpd whose XOAUTH2 mechanism asks the token server about each bearer token and, on
a bad one, answers as Gmail does: a 334 challenge carrying a base64 JSON error, then 535 after the client's empty
reply.
"""
from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.servers import RecordingHandler, SmtpServer, free_port


@dataclass
class TokenServer:
    lifetime: int = 3600
    client_id: str = "hubbot-test-client"
    client_secret: str = "test-client-secret"
    refresh_token: str = "test-refresh-token"
    fixed_token: str | None = None          # issue this token every time (Dovecot checks a fixed "password")
    offset: float = 0.0
    issued: list[str] = field(default_factory=list)
    checked: list[tuple[str, bool]] = field(default_factory=list)   # (token, valid) per tokeninfo call
    _expiry: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    # -- the clock the server and the provider share --

    def clock(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def revoke_all(self) -> None:
        with self._lock:
            self._expiry.clear()

    def valid(self, token: str) -> bool:
        with self._lock:
            return self.clock() < self._expiry.get(token, 0.0)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    # -- HTTP --

    def _issue(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return 401, {"error": "invalid_client"}
        if form.get("refresh_token") != self.refresh_token:
            return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
        token = self.fixed_token or f"ya29.test-{len(self.issued) + 1}-{secrets.token_hex(8)}"
        with self._lock:
            self._expiry[token] = self.clock() + self.lifetime
            self.issued.append(token)
        return 200, {"access_token": token, "expires_in": self.lifetime, "token_type": "Bearer",
                     "scope": "https://mail.google.com/"}

    def start(self) -> TokenServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", 0))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                if urllib.parse.urlsplit(self.path).path != "/token":
                    self._answer(404, {"error": "not_found"})
                    return
                self._answer(*outer._issue(form))

            def do_GET(self) -> None:  # noqa: N802
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                token = query.get("access_token", "")
                ok = outer.valid(token)
                outer.checked.append((token, ok))
                if ok:
                    self._answer(200, {"expires_in": int(outer._expiry[token] - outer.clock())})
                else:
                    self._answer(400, {"error": "invalid_token"})

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def tokeninfo(self, token: str) -> bool:
        """What a mail server does with a bearer token: ask the token server whether it is valid now."""
        base = self.url.rsplit("/", 1)[0]
        try:
            with urllib.request.urlopen(f"{base}/tokeninfo?access_token={urllib.parse.quote(token)}",
                                        timeout=5) as answer:
                return answer.status == 200
        except urllib.error.HTTPError:
            return False


@dataclass
class OAuthCheckingHandler(RecordingHandler):
    """Records mail like the other test servers; XOAUTH2 tokens are checked against the token server."""

    tokens: TokenServer | None = None
    rejected: list[str] = field(default_factory=list)

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> Any:  # noqa: N802 - aiosmtpd's naming
        from aiosmtpd.smtp import AuthResult

        if len(args) < 2 or self.tokens is None:
            return AuthResult(success=False, handled=False)
        decoded = base64.b64decode(args[1]).decode()
        parts = dict(p.split("=", 1) for p in decoded.split("\x01") if "=" in p)
        token = parts.get("auth", "").removeprefix("Bearer ")
        ok = await asyncio.get_running_loop().run_in_executor(None, self.tokens.tokeninfo, token)
        if ok:
            self.auth_log.append(("XOAUTH2", parts.get("user", "")))
            return AuthResult(success=True, auth_data=parts.get("user", ""))
        self.rejected.append(token)
        # Gmail's way: a 334 challenge with the error as base64 JSON; the client answers with an empty line.
        await server.challenge_auth(json.dumps({"status": "401", "schemes": "bearer",
                                                "scope": "https://mail.google.com/"}))
        return AuthResult(success=False, handled=False)


def start_oauth_smtp(tokens: TokenServer, port: int | None = None) -> SmtpServer:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    handler = OAuthCheckingHandler(tokens=tokens)
    port = port or free_port()
    # PLAIN and LOGIN are offered by aiosmtpd itself: refuse them, so only a valid bearer token gets in.
    controller = Controller(handler, hostname="127.0.0.1", port=port, auth_required=True, auth_require_tls=False,
                            authenticator=lambda *args: AuthResult(success=False, handled=False))
    controller.start()
    return SmtpServer("127.0.0.1", port, handler, {}, controller)
