"""The rules as a registry: every check has a unit test of its own here (and every validator one in
``test_validators.py``), a name registered twice is an error, and the policy is data a programme can extend.

Each check is run alone on a ``FormContext`` built from a built-in programme and realistic answers, with one thing
changed, so a failure names the check that broke.
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

import pytest

from parsers.errors import ConfigError
from rules.checks import CHECKS, DEFAULT_POLICY, Findings, FormContext, HubView, policy_for, register
from rules.definitions import load_registry
from rules.mapping import FieldReading, FormReading
from rules.maths_hubs import match_maths_hub
from rules.validators import VALIDATORS, FieldContext, validator
from rules.verdict import FlagCode, IssueKind
from samples.applications import complete_answers

P24 = "secondary-tfm-wg-2024"
REGISTRY = load_registry()


def context(programme_id: str = P24, *, change: dict[str, str | None] | None = None, copied: bool = True,
            hub: HubView | None = None, received: datetime | None = None) -> FormContext:
    programme = REGISTRY.get(programme_id)
    assert programme is not None
    answers: dict[str, str | None] = {f.id: None for f in programme.fields}
    answers.update(complete_answers(programme_id))
    answers.update(change or {})
    people = {v.lower() for k, v in answers.items() if k.endswith(".email") and v} if copied else set()
    # Every label found where the form prints it, so each check is tested on what it decides, not on reading.
    reading = FormReading({fid: FieldReading(fid, True, value, score=1.0) for fid, value in answers.items()})
    return FormContext(programme=programme, reading=reading, correspondents=frozenset(people), hub=hub,
                       received_at=received or datetime(2024, 6, 1, 12, tzinfo=timezone.utc),
                       deadline=date(2024, 6, 28))


def run(name: str, ctx: FormContext, findings: Findings | None = None) -> Findings:
    findings = findings or Findings()
    # Later checks read the normalised values the first one leaves, as in the real policy.
    if name != "field-values":
        CHECKS["field-values"].check(ctx, findings)
        findings.issues.clear()
    CHECKS[name].check(ctx, findings)
    return findings


def test_every_registered_check_has_a_test_here() -> None:
    tested = {name.removeprefix("test_check_").replace("_", "-") for name in globals() if name.startswith("test_check_")}
    assert tested == set(CHECKS)


def test_check_field_values() -> None:
    assert run("field-values", context()).issues == []
    missing = run("field-values", context(change={"school.telephone": None})).issues
    assert [(i.field, i.kind) for i in missing] == [("school.telephone", IssueKind.MISSING)]
    invalid = run("field-values", context(change={"school.urn": "12345"})).issues
    assert [(i.field, i.kind) for i in invalid] == [("school.urn", IssueKind.INVALID)]


def test_check_word_limits() -> None:
    programme = REGISTRY.get(P24)
    assert programme is not None
    statement = next(f for f in programme.fields if f.words)
    assert run("word-limits", context()).issues == []
    long = " ".join(["word"] * (statement.words.limit * 2 + 1))
    findings = run("word-limits", context(change={statement.id: long}))
    assert findings.issues or any(f.code is FlagCode.WORD_GUIDANCE for f in findings.flags)


def test_check_signatories_copied() -> None:
    assert all(s.copied for s in run("signatories-copied", context()).signatories)
    assert not any(s.copied for s in run("signatories-copied", context(copied=False)).signatories)


def test_check_deadline() -> None:
    on_time = run("deadline", context())
    late = run("deadline", context(received=datetime(2024, 6, 29, 0, 30, tzinfo=timezone.utc)))
    assert not any(f.code is FlagCode.LATE for f in on_time.flags)
    assert any(f.code is FlagCode.LATE for f in late.flags)


def test_check_region() -> None:
    assert not run("region", context()).flags
    away = run("region", context(change={"school.address": "1 High Street, Penzance, Cornwall TR18 2SX"}))
    assert [f.code for f in away.flags] == [FlagCode.REGION]


def test_check_hub_match() -> None:
    central = HubView("central", "Central Maths Hub", frozenset({"hub@central.example"}), frozenset({P24}),
                      match_maths_hub("Central Maths Hub"))
    other = HubView("north", "North Maths Hub", frozenset({"hub@north.example"}), frozenset({"primary-trg-pilot-2019"}),
                    None)
    assert not run("hub-match", context(hub=central)).flags
    assert [f.code for f in run("hub-match", context(hub=other)).flags] == [FlagCode.WRONG_HUB]


def test_a_name_registered_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        validator("urn")(lambda value, context=None: None)
    with pytest.raises(ValueError, match="registered twice"):
        @register
        class Again:
            name = "deadline"
            description = ""

            def check(self, ctx: FormContext, findings: Findings) -> None: ...
    assert "urn" in VALIDATORS and CHECKS["deadline"].__class__.__name__ == "Deadline"


def test_a_validator_sees_its_fields_context() -> None:
    seen: list[FieldContext] = []

    @validator("test-context-probe")
    def probe(value: str, context: FieldContext | None = None) -> Any:
        seen.append(context)
        return VALIDATORS["text"](value, context)

    try:
        programme = REGISTRY.get(P24)
        assert programme is not None
        fields = tuple(f if f.id != "school.name" else type(f)(**{**f.__dict__, "validator": "test-context-probe"})
                       for f in programme.fields)
        patched = type(programme)(**{**programme.__dict__, "fields": fields})
        ctx = context()
        CHECKS["field-values"].check(FormContext(patched, ctx.reading, ctx.correspondents, ctx.hub, ctx.received_at,
                                                 ctx.deadline), Findings())
        (seen_context,) = seen
        assert seen_context.field_id == "school.name"
        assert seen_context.answers["school.urn"] == ctx.answers["school.urn"]
    finally:
        del VALIDATORS["test-context-probe"]


def test_the_policy_is_data_a_programme_extends() -> None:
    programme = REGISTRY.get(P24)
    assert programme is not None
    assert [c.name for c in policy_for(programme)] == list(DEFAULT_POLICY)
    extended = type(programme)(**{**programme.__dict__, "checks": ("region", "no-such-check")})
    with pytest.raises(ConfigError, match="no-such-check"):
        policy_for(extended)
