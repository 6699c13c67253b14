"""The real ``hubbot`` console script, run as a subprocess: ``check FILE --json`` prints the object documented in
``shared/spec/interface.md`` (every key, every field id of the programme, null where empty), several files give a
JSON array, the default is a readable summary, the exit code is 0 whatever the verdict and 2 on a missing file,
bad usage or a config with an unknown key (named in the message).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from samples.applications import LONDON, application_email, complete_answers, fill_form, programme
from samples.mail import out_of_office, question_email

KEYS = ["file", "message_id", "received_at", "sender", "status", "programme", "hub", "attachment", "school",
        "fields", "missing_fields", "invalid_fields", "unsure_fields", "signatories", "late", "flags", "problems",
        "authentication",
        "reply"]
REPLY_KEYS = {"kind", "to", "cc", "subject", "body"}
PID = "secondary-tfm-wg-2024"
REPO = Path(__file__).resolve().parents[1]


def _command() -> list[str]:
    script = Path(sys.executable).parent / "hubbot"
    if script.exists():
        return [str(script)]
    found = shutil.which("hubbot")
    return [found] if found else [sys.executable, "-m", "bot.cli"]


def hubbot(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HUBBOT_CONFIG"}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([*_command(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def mail(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("mail")
    answers = complete_answers(PID)
    partial = {k: v for k, v in answers.items() if k not in {"teacher1.trn", "maths_hub"}}
    messages = {
        "complete": application_email(PID, fill_form(PID, answers),
                                      received=datetime(2024, 6, 20, 10, 0, tzinfo=LONDON)),
        "incomplete": application_email(PID, fill_form(PID, partial), pattern="one_missing",
                                        received=datetime(2024, 6, 29, 10, 0, tzinfo=LONDON)),
        "ignored": out_of_office(to=programme(PID).hub.address),
        "question": question_email(to=programme(PID).hub.address),
        "unreadable": application_email(PID, b"PK\x03\x04 not really a zip", filename="form.docx"),
    }
    paths = {}
    for name, raw in messages.items():
        paths[name] = folder / f"{name}.eml"
        paths[name].write_bytes(raw)
    return paths


def test_json_object_has_every_interface_key(mail: dict[str, Path]) -> None:
    result = hubbot("check", str(mail["complete"]), "--json", cwd=mail["complete"].parent)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert list(out) == KEYS
    assert out["file"] == str(mail["complete"])
    assert out["status"] == "complete" and out["programme"] == PID and out["hub"] == "central"
    assert out["received_at"] == "2024-06-20T10:00:00+01:00"
    assert out["school"] == {"name": "Valley School", "urn": "122687"}
    assert list(out["fields"]) == list(programme(PID).field_ids)
    assert out["missing_fields"] == [] and out["invalid_fields"] == [] and out["flags"] == []
    assert out["late"] is False and out["problems"] == []
    assert [s["role"] for s in out["signatories"]] == ["head", "hod", "teacher1", "teacher2"]
    assert all(set(s) == {"role", "name", "email", "copied"} and s["copied"] for s in out["signatories"])
    assert set(out["reply"]) == REPLY_KEYS and out["reply"]["kind"] == "acknowledgement"


def test_json_fields_null_where_empty_and_problems_listed(mail: dict[str, Path]) -> None:
    result = hubbot("check", "--json", str(mail["incomplete"]), cwd=mail["incomplete"].parent)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["status"] == "incomplete"
    assert list(out["fields"]) == list(programme(PID).field_ids)
    assert out["fields"]["teacher1.trn"] is None and out["fields"]["maths_hub"] is None
    assert out["missing_fields"] == ["teacher1.trn"]
    assert [s["copied"] for s in out["signatories"]] == [True, True, True, False]
    assert out["late"] is True and {"code": "late"}.items() <= out["flags"][0].items()
    assert out["reply"]["kind"] == "missing_information"


def test_several_files_give_an_array_in_order(mail: dict[str, Path]) -> None:
    names = ["complete", "incomplete", "ignored", "question", "unreadable"]
    result = hubbot("check", "--json", *(str(mail[n]) for n in names), cwd=mail["complete"].parent)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert isinstance(out, list)
    assert [o["status"] for o in out] == ["complete", "incomplete", "ignored", "not_application", "unreadable"]
    assert [o["file"] for o in out] == [str(mail[n]) for n in names]
    for o in out:
        assert list(o) == KEYS
    assert out[2]["reply"] is None and out[3]["reply"] is None
    assert out[2]["fields"] == {} and out[2]["school"] is None
    assert out[4]["reply"]["kind"] == "unreadable" and out[4]["problems"]


@pytest.mark.parametrize("name", ["complete", "incomplete", "ignored", "question", "unreadable"])
def test_readable_summary_by_default_and_exit_zero(mail: dict[str, Path], name: str) -> None:
    result = hubbot("check", str(mail[name]), cwd=mail[name].parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"== {mail[name]}")
    assert "Status:" in result.stdout
    with pytest.raises(json.JSONDecodeError):
        json.loads(result.stdout)


def test_summary_shows_what_is_wrong(mail: dict[str, Path]) -> None:
    out = hubbot("check", str(mail["incomplete"]), cwd=mail["incomplete"].parent).stdout
    assert "incomplete" in out and "teacher1.trn" in out and "MISSING" in out
    assert "NOT COPIED" in out and "LATE" in out and "missing_information" in out


def test_missing_file_exits_2(mail: dict[str, Path]) -> None:
    result = hubbot("check", str(mail["complete"].parent / "nope.eml"), cwd=mail["complete"].parent)
    assert result.returncode == 2
    assert "nope.eml" in result.stderr


@pytest.mark.parametrize("args", [["check"], ["check", "--frobnicate", "x.eml"], ["nonsense"], [],
                                  ["check", "x.eml", "--now", "not-a-date"]])
def test_bad_usage_exits_2(args: list[str], tmp_path: Path) -> None:
    result = hubbot(*args, cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr


def test_help(tmp_path: Path) -> None:
    result = hubbot("check", "--help", cwd=tmp_path)
    assert result.returncode == 0 and "--json" in result.stdout and "--config" in result.stdout


def test_config_with_bad_key_exits_2_naming_it(mail: dict[str, Path], tmp_path: Path) -> None:
    config = tmp_path / "hubbot.toml"
    config.write_text('timezone = "Europe/London"\npoll_evry_minutes = 5\n', encoding="utf-8")
    result = hubbot("check", "--config", str(config), str(mail["complete"]), cwd=tmp_path)
    assert result.returncode == 2
    assert "poll_evry_minutes" in result.stderr
    assert str(config) in result.stderr
    assert "Traceback" not in result.stderr


def test_config_with_bad_nested_key_exits_2_naming_it(mail: dict[str, Path], tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[[hubs]]\nid = "central"\nname = "Central Maths Hub"\n'
                      'address = "mathshub@bishopchalloner.bham.sch.uk"\nprogrammes = ["secondary-tfm-wg-2024"]\n'
                      '[hubs.dates."secondary-tfm-wg-2024"]\ndedline = "2024-07-05"\n', encoding="utf-8")
    result = hubbot("check", "--config", str(config), str(mail["complete"]), cwd=tmp_path)
    assert result.returncode == 2
    assert "dedline" in result.stderr


def test_missing_config_file_exits_2(mail: dict[str, Path], tmp_path: Path) -> None:
    result = hubbot("check", "--config", str(tmp_path / "absent.toml"), str(mail["complete"]), cwd=tmp_path)
    assert result.returncode == 2 and "absent.toml" in result.stderr


def test_config_moves_deadline_in_check(mail: dict[str, Path], tmp_path: Path) -> None:
    config = tmp_path / "hubbot.toml"
    config.write_text('[[hubs]]\nid = "central"\nname = "Central Maths Hub"\n'
                      'address = "mathshub@bishopchalloner.bham.sch.uk"\nprogrammes = ["secondary-tfm-wg-2024"]\n'
                      '[hubs.dates."secondary-tfm-wg-2024"]\ndeadline = "2024-07-05"\n', encoding="utf-8")
    # Found as ./hubbot.toml without --config.
    result = hubbot("check", "--json", str(mail["incomplete"]), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["late"] is False
