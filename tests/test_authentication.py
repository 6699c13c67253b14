"""Sender authentication from ``Authentication-Results`` (RFC 8601): only headers whose authserv-id the config
trusts count, the topmost trusted result per method wins (a copy lower down came with the message), DMARC decides
where it is present, aligned DKIM or SPF where the domain has none, Exchange Online's id-less header is trusted
only when ``exchange-online`` is listed. A sender that fails gets no reply, is ``review`` with the flag
``unauthenticated``, and ``check --json`` carries the ``authentication`` object. Against real servers: a forged
e-mail put in Dovecot is stored, not answered (aiosmtpd receives nothing) and listed in the digest.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from parsers.email import parse_email
from rules.authentication import AuthResult, aligned, authenticate, parse_authentication_results
from rules.decision import History, decide
from rules.pipeline import CheckSettings, read_email
from rules.verdict import FlagCode, Status
from samples.applications import application_email, complete_answers, fill_form

P24 = "secondary-tfm-wg-2024"
MX = "mx.hub.example"
REPO = Path(__file__).resolve().parents[1]


def headers(*values: str) -> list[tuple[str, str]]:
    return [("Authentication-Results", v) for v in values]


def test_parse_standard_header() -> None:
    parsed = parse_authentication_results(
        "mx.google.com; spf=pass (google.com: domain of a@b.org designates 1.2.3.4 as permitted sender) "
        "smtp.mailfrom=a@b.org; dkim=pass header.i=@b.org header.s=s1; dmarc=pass (p=REJECT) header.from=b.org")
    assert parsed is not None and parsed.authserv_id == "mx.google.com"
    assert [(r.method, r.result) for r in parsed.results] == [("spf", "pass"), ("dkim", "pass"), ("dmarc", "pass")]
    assert parsed.results[0].prop("smtp.mailfrom") == "a@b.org"


def test_exchange_online_header_has_no_authserv_id() -> None:
    value = ("spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=school.example; dkim=pass (signature was verified) "
             "header.d=school.example;dmarc=pass action=none header.from=school.example;compauth=pass reason=100")
    parsed = parse_authentication_results(value)
    assert parsed is not None and parsed.authserv_id == ""
    assert authenticate(headers(value), "a@school.example", ["exchange-online"]).result is AuthResult.PASS
    # Not listed: an id-less header is anyone's.
    assert authenticate(headers(value), "a@school.example", [MX]).result is AuthResult.NONE


@pytest.mark.parametrize("value, sender, expected", [
    (f"{MX}; dmarc=pass header.from=school.example", "a@school.example", AuthResult.PASS),
    (f"{MX}; dmarc=fail (p=reject) header.from=school.example", "a@school.example", AuthResult.FAIL),
    (f"{MX}; dmarc=none header.from=school.example; dkim=pass header.d=school.example", "a@school.example",
     AuthResult.PASS),
    (f"{MX}; dkim=pass header.d=mail.school.example", "a@school.example", AuthResult.PASS),   # relaxed alignment
    (f"{MX}; dkim=pass header.d=mailer.example", "a@school.example", AuthResult.NONE),      # not aligned
    (f"{MX}; spf=pass smtp.mailfrom=bounce@school.example", "a@school.example", AuthResult.PASS),
    (f"{MX}; spf=fail smtp.mailfrom=school.example", "a@school.example", AuthResult.NONE),
    (f"{MX} 1; dmarc=pass header.from=school.example", "a@school.example", AuthResult.PASS),  # version number
    (f"{MX}; none", "a@school.example", AuthResult.NONE),
])
def test_verdicts(value: str, sender: str, expected: AuthResult) -> None:
    assert authenticate(headers(value), sender, [MX]).result is expected


def test_untrusted_servers_are_ignored() -> None:
    forged = headers("evil.example; dmarc=pass header.from=school.example")
    assert authenticate(forged, "a@school.example", [MX]).result is AuthResult.NONE
    assert authenticate(forged, "a@school.example", []).detail == "no trusted_authserv_ids configured"


def test_topmost_trusted_result_wins() -> None:
    """The sender wrote a header claiming our server's id below the one our server really added."""
    value = headers(f"{MX}; dmarc=fail header.from=school.example", f"{MX}; dmarc=pass header.from=school.example")
    assert authenticate(value, "a@school.example", [MX]).result is AuthResult.FAIL


def test_alignment() -> None:
    assert aligned("school.example", "a@School.Example")
    assert aligned("@mail.school.example", "school.example")
    assert not aligned("notschool.example", "school.example")
    assert not aligned("", "school.example")


SETTINGS = replace(CheckSettings.builtin(), trusted_authserv_ids=frozenset({MX}))


def form_email(auth: str | None) -> bytes:
    answers = complete_answers(P24)
    raw = application_email(P24, fill_form(P24, answers), answers=answers)
    if auth is None:
        return raw
    return f"Authentication-Results: {MX}; {auth}\r\n".encode() + raw


def decided(raw: bytes):
    verdict = read_email(parse_email(raw), len(raw), SETTINGS)
    return decide(verdict, History(), SETTINGS, SETTINGS.hubs.for_email(parse_email(raw)))


def test_failed_sender_gets_no_reply_and_is_for_review() -> None:
    domain = parse_email(form_email(None)).sender.email.rpartition("@")[2]
    decision = decided(form_email(f"dmarc=fail header.from={domain}"))
    assert decision.verdict.status is Status.REVIEW and decision.reply is None
    assert decision.verdict.has_flag(FlagCode.UNAUTHENTICATED)
    assert decision.verdict.to_json()["authentication"] == {"result": "fail", "detail": "dmarc=fail"}
    passed = decided(form_email(f"dmarc=pass header.from={domain}"))
    assert passed.verdict.status is Status.COMPLETE and passed.reply is not None
    assert passed.verdict.to_json()["authentication"]["result"] == "pass"
    unknown = decided(form_email(None))
    assert unknown.reply is not None and unknown.verdict.to_json()["authentication"]["result"] == "none"


def test_check_json_reports_authentication(tmp_path: Path) -> None:
    domain = parse_email(form_email(None)).sender.email.rpartition("@")[2]
    eml = tmp_path / "forged.eml"
    eml.write_bytes(form_email(f"dmarc=fail header.from={domain}"))
    config = tmp_path / "hubbot.toml"
    config.write_text(f'[security]\ntrusted_authserv_ids = ["{MX}"]\n')
    result = subprocess.run([sys.executable, "-m", "bot.cli", "check", "--json", "--config", str(config), str(eml)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["authentication"] == {"result": "fail", "detail": "dmarc=fail"}
    assert out["status"] == "review" and out["reply"] is None
    assert {"code": "unauthenticated", "detail": "dmarc=fail"} in out["flags"]
    readable = subprocess.run([sys.executable, "-m", "bot.cli", "check", "--config", str(config), str(eml)],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "Status:    review" in readable.stdout and "Sender:    fail (dmarc=fail)" in readable.stdout
    assert "Reply:     none" in readable.stdout
