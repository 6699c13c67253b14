"""``hubbot doctor`` and ``hubbot status`` as a hub's IT runs them, against a real Dovecot and a real aiosmtpd that
requires a login. A healthy config passes every doctor check (exit 0) and status says healthy (exit 0). Each broken
piece is caught with the line naming it and exit 1: a wrong IMAP password, a missing folder, a missing move_to
folder, the SMTP server down (a closed port), a missing environment variable, an unknown programme, a deadline
passed. Status turns degraded (exit 1) when the mailbox has failed three polls in a row, when sending fails at the
server three times in a row, when replies are due and nobody sends them, and on the config problems doctor finds
without the network; a config it cannot read is exit 2, in text and in JSON.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from storage import repository as repo
from tests.servers import free_port
from tests.test_workflow import LONDON, PID, Bot, application, hub_toml

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")]

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2024, 6, 20, 12, 0, tzinfo=LONDON)      # the programme's deadline is 28 June 2024
IMAP_ENV, SMTP_ENV = "HUBBOT_TEST_IMAP_PASSWORD", "HUBBOT_TEST_SMTP_PASSWORD"


def ops_config(tmp_path: Path, dovecot, smtp, *, folder: str, move_to: str | None = None,
               smtp_port: int | None = None, programmes: tuple[str, ...] = (PID,), extra: str = "") -> Path:
    imap = {"host": dovecot.host, "port": dovecot.port, "security": "none", "username": dovecot.user,
            "password_env": IMAP_ENV, "folder": folder, "timeout_seconds": 10}
    if move_to:
        imap["move_to"] = move_to
    hub = hub_toml("central", maildir=None, imap=imap)
    hub = hub.replace(f'programmes = ["{PID}"]', "programmes = [" + ", ".join(f'"{p}"' for p in programmes) + "]")
    text = (f'{extra}\n[database]\nurl = "sqlite:///{tmp_path / "hubbot.db"}"\n'
            f'[smtp]\nhost = "{smtp.host}"\nport = {smtp_port or smtp.port}\nsecurity = "none"\n'
            f'username = "hub@example.org"\npassword_env = "{SMTP_ENV}"\ntimeout_seconds = 5\n' + hub)
    path = tmp_path / "hubbot.toml"
    path.write_text(text)
    return path


def hubbot(config: Path, *args: str, now: datetime = NOW, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("HUBBOT_CONFIG", IMAP_ENV, SMTP_ENV)}
    environment["PYTHONPATH"] = str(REPO)
    environment.update(env or {})
    # A mailbox's first poll starts at its end unless --backfill: these tests answer mail already in it.
    extra = ("--backfill", "1970-01-01") if args[:2] == ("run", "--once") else ()
    return subprocess.run([sys.executable, "-m", "bot.cli", *args, *extra, "--config", str(config), "--now",
                           now.isoformat()], cwd=config.parent, env=environment, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def secrets(dovecot, smtp_server_auth) -> dict[str, str]:
    return {IMAP_ENV: dovecot.password, SMTP_ENV: smtp_server_auth.users["hub@example.org"]}


@pytest.fixture
def healthy(tmp_path: Path, dovecot, smtp_server_auth, secrets) -> Path:
    folder, done = dovecot.new_folder(), dovecot.new_folder()
    config = ops_config(tmp_path, dovecot, smtp_server_auth, folder=folder, move_to=done)
    first = hubbot(config, "run", "--once", env=secrets)        # creates and migrates the database
    assert first.returncode == 0, first.stdout + first.stderr
    return config


def fails(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("FAIL")]


def test_healthy_config_passes_doctor_and_status(healthy: Path, dovecot, smtp_server_auth, secrets) -> None:
    doctor = hubbot(healthy, "doctor", env=secrets)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert fails(doctor) == [] and "doctor: all" in doctor.stdout
    lines = doctor.stdout
    assert f"{dovecot.user}@{dovecot.host}:{dovecot.port}: logged in (password)" in lines
    assert "move_to" in lines and "exists" in lines
    assert f"[smtp] {smtp_server_auth.host}:{smtp_server_auth.port}: EHLO answered, login accepted" in lines
    assert smtp_server_auth.received == []                      # nothing was sent
    assert f"{IMAP_ENV} (hubs[0].imap.password_env): set" in lines
    assert "deadline Fri 28 Jun 2024, in 8 day(s)" in lines
    assert "at revision" in lines and "(the latest)" in lines
    assert dovecot.password not in lines and secrets[SMTP_ENV] not in lines

    status = hubbot(healthy, "status", now=NOW + timedelta(minutes=2), env=secrets)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "HEALTHY" in status.stdout.splitlines()[0]
    report = json.loads(hubbot(healthy, "status", "--json", now=NOW + timedelta(minutes=2), env=secrets).stdout)
    assert report["status"] == "healthy" and report["exit_code"] == 0
    [hub] = report["hubs"]
    assert hub["mailbox"]["last_good_poll"] is not None and hub["mailbox"]["failures_in_a_row"] == 0
    assert hub["replies"] == {"pending": 0, "failed": 0, "uncertain": 0}
    assert hub["next_digest"].startswith("2024-06-21T07:30")
    assert hub["next_reminder"].startswith("2024-06-21T09:00")   # 7 days before the 28 June deadline


@pytest.mark.parametrize("broken", ["imap_password", "folder", "move_to", "smtp_down", "env", "programme",
                                    "deadline"])
def test_doctor_names_each_broken_piece(broken: str, tmp_path: Path, dovecot, smtp_server_auth, secrets) -> None:
    folder, done = dovecot.new_folder(), dovecot.new_folder()
    env, now = dict(secrets), NOW
    options: dict = {"folder": folder, "move_to": done}
    if broken == "folder":
        options["folder"] = "NoSuchFolder"
    if broken == "move_to":
        options["move_to"] = "NoSuchArchive"
    if broken == "smtp_down":
        options["smtp_port"] = free_port()                    # nothing listens there
    if broken == "programme":
        options["programmes"] = (PID, "no-such-programme-2030")
    known_only = {**options, "programmes": (PID,)} if broken == "programme" else options
    config = ops_config(tmp_path, dovecot, smtp_server_auth, **known_only)
    Bot(config).close()                                        # a migrated database, so only `broken` fails
    if broken == "programme":
        # The worker refuses to start on a hub naming an unknown programme; the doctor still checks all the rest.
        config = ops_config(tmp_path, dovecot, smtp_server_auth, **options)
    if broken == "imap_password":
        env[IMAP_ENV] = "not-the-password"
    if broken == "env":
        del env[SMTP_ENV]
    if broken == "deadline":
        now = datetime(2024, 7, 1, 9, 0, tzinfo=LONDON)
    result = hubbot(config, "doctor", now=now, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    failed = fails(result)
    where = f"{dovecot.host}:{dovecot.port}"
    expected = {
        "imap_password": [f"IMAP login to {where} refused"],
        "folder": [f"IMAP folder 'NoSuchFolder' cannot be opened on {where}"],
        "move_to": ["move_to 'NoSuchArchive'", f"on {where} cannot take messages: it does not exist"],
        "smtp_down": [f"[smtp] 127.0.0.1:{options.get('smtp_port')}", "SMTP connection to", "failed"],
        "env": [f"FAIL  env       {SMTP_ENV} (smtp.password_env): not set"],
        "programme": ["no-such-programme-2030 is not a known programme"],
        "deadline": [f"{PID}: deadline Fri 28 Jun 2024 has passed", '[hubs.dates."secondary-tfm-wg-2024"]'],
    }[broken]
    assert any(all(e in line for e in expected) for line in failed), failed
    # One thing broken, one failing line (the missing SMTP password also stops the SMTP login).
    assert len(failed) == (2 if broken == "env" else 1), failed
    assert "Traceback" not in result.stderr
    assert dovecot.password not in result.stdout


def test_status_degraded_after_three_failed_polls(healthy: Path, dovecot, secrets) -> None:
    wrong = {**secrets, IMAP_ENV: "not-the-password"}
    for minutes in (5, 10):
        run = hubbot(healthy, "run", "--once", now=NOW + timedelta(minutes=minutes), env=wrong)
        assert run.returncode == 1 and f"IMAP login to {dovecot.host}:{dovecot.port} refused" in run.stdout
        assert "Traceback" not in run.stderr
    # Two failures: not yet an incident, and the last good poll is recent.
    status = hubbot(healthy, "status", now=NOW + timedelta(minutes=11), env=wrong)
    assert status.returncode == 0, status.stdout
    assert "2 failure(s) since" in status.stdout
    run = hubbot(healthy, "run", "--once", now=NOW + timedelta(minutes=15), env=wrong)
    assert "incident opened: mailbox:central:" in run.stdout
    status = hubbot(healthy, "status", now=NOW + timedelta(minutes=16), env=wrong)
    assert status.returncode == 1, status.stdout
    assert "could not be read for 3 polls in a row" in status.stdout and "last alert" in status.stdout
    report = json.loads(hubbot(healthy, "status", "--json", now=NOW + timedelta(minutes=16), env=wrong).stdout)
    assert report["status"] == "degraded" and report["hubs"][0]["incidents"][0]["component"] == "mailbox"
    # Fixed: the next poll recovers and status is healthy again.
    assert "incident closed" in hubbot(healthy, "run", "--once", now=NOW + timedelta(minutes=20),
                                       env=secrets).stdout
    assert hubbot(healthy, "status", now=NOW + timedelta(minutes=21), env=secrets).returncode == 0


def test_status_degraded_when_the_smtp_server_is_down(tmp_path: Path, dovecot, smtp_server_auth, secrets) -> None:
    folder = dovecot.new_folder()
    for urn in ("100001", "100002", "100003"):
        dovecot.append(application(urn=urn), folder)
    down = free_port()
    config = ops_config(tmp_path, dovecot, smtp_server_auth, folder=folder, smtp_port=down)
    run = hubbot(config, "run", "--once", env=secrets)
    assert "replies: 0 sent, 3 to retry" in run.stdout, run.stdout + run.stderr
    status = hubbot(config, "status", now=NOW + timedelta(minutes=1), env=secrets)
    assert status.returncode == 1, status.stdout
    assert f"SMTP server 127.0.0.1:{down} ([smtp]) is failing: 3 sending attempts in a row" in status.stdout
    assert "3 pending" in status.stdout
    # Two hours on, the replies are overdue too, but the server's incident already says why: one finding.
    later = hubbot(config, "status", "--json", now=NOW + timedelta(hours=2), env=secrets)
    problems = json.loads(later.stdout)["hubs"][0]["problems"]
    assert any("is failing" in p for p in problems) and not any("outbox" in p for p in problems)


def test_status_sees_a_stuck_outbox_without_any_worker(healthy: Path, secrets) -> None:
    bot = Bot(healthy)
    try:
        with bot.db.session() as session:
            repo.enqueue_reply(session, hub_id="central", kind="acknowledgement", from_addr="hub@example.org",
                               to=["school@example.sch.uk"], subject="s", text="t", dedupe_key="stuck", now=NOW)
    finally:
        bot.close()
    assert hubbot(healthy, "status", now=NOW + timedelta(minutes=5), env=secrets).returncode == 0
    status = hubbot(healthy, "status", now=NOW + timedelta(hours=2), env=secrets)
    assert status.returncode == 1
    assert "outbox of Central Maths Hub (central) is stuck: 1 e-mail(s) due for more than 60 minutes" in status.stdout
    assert "no good poll for 120 min: is the worker running?" in status.stdout


def test_status_reports_config_problems_and_config_errors(healthy: Path, tmp_path: Path, secrets) -> None:
    missing = {k: v for k, v in secrets.items() if k != SMTP_ENV}
    status = hubbot(healthy, "status", now=NOW + timedelta(minutes=2), env=missing)
    assert status.returncode == 1 and f"config: {SMTP_ENV} (smtp.password_env): not set" in status.stdout
    late = hubbot(healthy, "status", now=datetime(2024, 7, 1, 9, 0, tzinfo=LONDON), env=secrets)
    assert late.returncode == 1 and "deadline Fri 28 Jun 2024 has passed" in late.stdout

    bad = tmp_path / "bad.toml"
    bad.write_text(healthy.read_text().replace("[smtp]", "[smtp]\nprot = 25"))
    text = hubbot(bad, "status", env=secrets)
    assert text.returncode == 2 and "smtp.prot" in text.stderr and "Traceback" not in text.stderr
    as_json = hubbot(bad, "status", "--json", env=secrets)
    assert as_json.returncode == 2 and json.loads(as_json.stdout)["status"] == "broken"
