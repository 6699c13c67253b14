"""XOAUTH2 access tokens for logging in to IMAP and SMTP, one module for both. Microsoft 365 uses an app-only token
(client credentials, through MSAL); Google Workspace exchanges a stored refresh token at its token endpoint. Secrets
come from the environment variables the config names, read when a token is needed (so a rotated secret is picked up
without a restart). A provider hands out a cached token until shortly before it expires; ``invalidate()`` throws the
cache away, which the IMAP source and the SMTP sender call when a server refuses a token, so one refusal of a token
that the server considers expired or revoked is followed by exactly one fresh token and one more try. Errors say
which provider and which error code, never a secret or a server's free-text description.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, Protocol

from bot.config import AuthMethod, OAuthSettings
from bot.mail.source import ErrorKind

# App-only tokens for Exchange Online carry the roles granted to the app (IMAP.AccessAsApp, SMTP.SendAsApp): one
# scope serves IMAP and SMTP alike.
MICROSOFT_SCOPE = "https://outlook.office365.com/.default"
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com/"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
EXPIRY_MARGIN_SECONDS = 60          # renew a token this long before the provider says it expires
# Token endpoint answers that a person must fix (a wrong or revoked secret, a refresh token withdrawn): retrying
# will not help. Anything else (the endpoint down, a 5xx) may clear up by itself.
_PERMANENT_ERRORS = {"invalid_grant", "invalid_client", "unauthorized_client", "invalid_request", "invalid_scope",
                     "access_denied", "missing_secret"}


class TokenError(Exception):
    """No access token could be obtained. ``kind`` says whether trying again later may help."""

    def __init__(self, message: str, kind: ErrorKind = ErrorKind.TEMPORARY) -> None:
        super().__init__(message)
        self.kind = kind


class TokenProvider(Protocol):
    def __call__(self) -> str: ...

    def invalidate(self) -> None: ...


def env_secret(name: str | None, what: str) -> str:
    if not name:
        raise TokenError(f"no environment variable is configured for the {what}", ErrorKind.PERMANENT)
    value = os.environ.get(name)
    if not value:
        raise TokenError(f"environment variable {name} ({what}) is not set", ErrorKind.PERMANENT)
    return value


def _kind(error: str) -> ErrorKind:
    return ErrorKind.PERMANENT if error in _PERMANENT_ERRORS else ErrorKind.TEMPORARY


class MicrosoftTokenProvider:
    """Microsoft 365: an app-only token by the client credentials grant. MSAL keeps the token in its in-memory
    cache and renews it when due, so calling the provider before every login is cheap; ``invalidate`` starts a new
    MSAL application, whose empty cache forces a new token."""

    def __init__(self, *, tenant_id: str, client_id: str, client_secret_env: str,
                 app_factory: Callable[..., Any] | None = None) -> None:
        self.tenant_id, self.client_id, self.client_secret_env = tenant_id, client_id, client_secret_env
        self._factory = app_factory
        self._app: Any = None

    def __call__(self) -> str:
        if self._app is None:
            factory = self._factory
            if factory is None:
                import msal
                factory = msal.ConfidentialClientApplication
            self._app = factory(self.client_id, authority=MICROSOFT_AUTHORITY + self.tenant_id,
                                client_credential=env_secret(self.client_secret_env, "Microsoft client secret"))
        try:
            result = self._app.acquire_token_for_client(scopes=[MICROSOFT_SCOPE])
        except Exception as exc:  # noqa: BLE001 - MSAL raises its HTTP library's errors when the network fails
            self._app = None
            raise TokenError(f"Microsoft token endpoint unreachable: {type(exc).__name__}") from exc
        token = result.get("access_token") if isinstance(result, dict) else None
        if not token:
            error = str(result.get("error", "unknown")) if isinstance(result, dict) else "unknown"
            # The error code only: error_description can echo tenant details (and never needs the secret).
            raise TokenError(f"Microsoft token request failed: {error}", _kind(error))
        return str(token)

    def invalidate(self) -> None:
        self._app = None


def post_form(url: str, data: dict[str, str], timeout: float) -> dict[str, Any]:
    """POST a form to a token endpoint and return its JSON answer, error answers included."""
    body = urllib.parse.urlencode(data).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (configured https URL)
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        try:
            return dict(json.loads(exc.read()))
        except ValueError:
            return {"error": f"http_{exc.code}"}
    except (OSError, ValueError) as exc:
        raise TokenError(f"token endpoint {urllib.parse.urlsplit(url).netloc} unreachable: "
                         f"{type(exc).__name__}") from exc


class GoogleTokenProvider:
    """Google: exchange the stored refresh token for an access token, cached until a minute before it expires."""

    def __init__(self, *, client_id: str, client_secret_env: str, refresh_token_env: str,
                 post: Callable[[str, dict[str, str], float], dict[str, Any]] = post_form,
                 clock: Callable[[], float] = time.monotonic, token_url: str = GOOGLE_TOKEN_URL,
                 timeout: float = 30.0) -> None:
        self.client_id, self.client_secret_env, self.refresh_token_env = client_id, client_secret_env, \
            refresh_token_env
        self.post, self.clock, self.token_url, self.timeout = post, clock, token_url, timeout
        self._token: str | None = None
        self._expires = 0.0

    def __call__(self) -> str:
        if self._token is not None and self.clock() < self._expires:
            return self._token
        answer = self.post(self.token_url, {
            "grant_type": "refresh_token",
            "client_id": self.client_id,
            "client_secret": env_secret(self.client_secret_env, "Google client secret"),
            "refresh_token": env_secret(self.refresh_token_env, "Google refresh token"),
        }, self.timeout)
        token = answer.get("access_token")
        if not token:
            error = str(answer.get("error", "unknown"))
            raise TokenError(f"Google token request failed: {error}", _kind(error))
        self._token = str(token)
        self._expires = self.clock() + max(0, int(answer.get("expires_in", 3600)) - EXPIRY_MARGIN_SECONDS)
        return self._token

    def invalidate(self) -> None:
        self._token = None


def microsoft_token_provider(*, tenant_id: str, client_id: str, client_secret_env: str,
                             app_factory: Callable[..., Any] | None = None) -> MicrosoftTokenProvider:
    return MicrosoftTokenProvider(tenant_id=tenant_id, client_id=client_id, client_secret_env=client_secret_env,
                                  app_factory=app_factory)


def google_token_provider(*, client_id: str, client_secret_env: str, refresh_token_env: str,
                          post: Callable[[str, dict[str, str], float], dict[str, Any]] = post_form,
                          clock: Callable[[], float] = time.monotonic, token_url: str = GOOGLE_TOKEN_URL,
                          timeout: float = 30.0) -> GoogleTokenProvider:
    return GoogleTokenProvider(client_id=client_id, client_secret_env=client_secret_env,
                               refresh_token_env=refresh_token_env, post=post, clock=clock, token_url=token_url,
                               timeout=timeout)


def token_provider_for(auth: AuthMethod, oauth: OAuthSettings, *, timeout: float = 30.0) -> TokenProvider | None:
    """The provider a ``[hubs.imap]``, ``[smtp]`` or ``[hubs.smtp]`` table asks for; None for a password login."""
    if auth is AuthMethod.MICROSOFT:
        return microsoft_token_provider(tenant_id=oauth.tenant_id or "", client_id=oauth.client_id or "",
                                        client_secret_env=oauth.client_secret_env or "")
    if auth is AuthMethod.GOOGLE:
        return google_token_provider(client_id=oauth.client_id or "", client_secret_env=oauth.client_secret_env or "",
                                     refresh_token_env=oauth.refresh_token_env or "",
                                     token_url=oauth.token_url or GOOGLE_TOKEN_URL, timeout=timeout)
    return None
