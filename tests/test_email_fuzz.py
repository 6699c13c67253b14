"""Property tests: no bytes at all, random or mutated from real messages, make parse_email or automatic_reason raise."""
from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers.email import parse_email
from parsers.types import Limits
from rules.automatic import automatic_reason
from samples.mail import DOCX_TYPE, build_email

WILD = Path(__file__).resolve().parents[1].parent / "shared" / "wild-mail"
SEEDS: list[bytes] = [p.read_bytes() for p in sorted(WILD.rglob("*.eml"))[::4]] if WILD.is_dir() else []
SEEDS.append(build_email(sender="Kate <k@valley.example>", to="admin@hub.example", subject="Candidature – École",
                         body_text="voilà", attachments=[("Formulaire é.docx", b"PK\x03\x04" * 50, DOCX_TYPE)],
                         forward=True, charset="windows-1252"))

# Fragments that steer mutations into the parser's hard paths: encodings, boundaries, parameters, dates.
TOKENS = [b"\r\n", b"\n", b"\r\n\r\n", b"=?", b"?=", b"=?utf-8?b?", b"=?windows-1252?q?", b"=?x-bad?q?", b"*0*=",
          b"filename*=utf-8''%E2%80", b"; name=\"", b"boundary=", b"--", b"Content-Type: multipart/mixed; boundary=b\r\n",
          b"Content-Type: message/rfc822\r\n", b"Content-Transfer-Encoding: base64\r\n", b"charset=utf-7", b"\x00",
          b"\xff\xfe", b"\xe9", b"<>", b"Received: x; 31 Feb 2024 25:61:00 +9999\r\n", b"From: <@>,;:\r\n", b";", b"\t"]

LIMITS = Limits(message_bytes=50_000, attachment_bytes=2_000)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(raw: bytes) -> None:
    for limits in (Limits(), LIMITS):
        parsed = parse_email(raw, limits)
        automatic_reason(parsed, own_addresses=frozenset({"admin@hub.example"}))
        assert all("\n" not in v and "\r" not in v for _, v in parsed.headers)
        assert "\n" not in parsed.subject and "\r" not in parsed.subject


@FAST
@given(st.binary(max_size=2000))
def test_random_bytes(raw: bytes) -> None:
    check(raw)


@FAST
@given(st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=20), st.text(max_size=20).map(str.encode)),
                max_size=60))
def test_token_soup(chunks: list[bytes]) -> None:
    check(b"".join(chunks))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "flip", "truncate"]))
        if action == "insert":
            data[pos:pos] = draw(st.sampled_from(TOKENS))
        elif action == "delete":
            del data[pos:pos + draw(st.integers(1, 40))]
        elif action == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif action == "truncate":
            del data[pos:]
    return bytes(data)


@FAST
@given(mutated())
def test_mutated_real_messages(raw: bytes) -> None:
    check(raw)
