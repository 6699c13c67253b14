"""A whole round, end to end, against a real Dovecot and a real aiosmtpd, driven only through the command line with
``--now`` (``hubbot run --once`` as a cron line would call it, ``hubbot decide``, ``hubbot export``):

- 20 June: six schools apply to the Central hub; St Anne's types its URN one digit short.
- 21 June: St Anne's sends the form again with the URN fixed (a new e-mail, not a reply): the same application;
  Riverside asks to withdraw.
- 24 June: decisions by each of the three routes: ``decide N --as`` (Valley selected, Riverside withdrawn, Oakfield
  shortlisted), ``decide --import`` of a filled CSV export (a dry run records nothing; ``--apply`` records St
  Anne's waitlisted), and a staff member e-mailing the filled XLSX with subject "Decisions" (Hillside declined; an
  unknown number and a word that is not a decision refused); a stranger's file records nothing.
- 2 and 9 July: the staff notice before the shortlist date and before the outcome date lists the school with no
  decision (Northgate).
- 5 July: the shortlist e-mail to Oakfield; 12 July 09:00: one outcome e-mail each to Valley, St Anne's and
  Hillside; nothing to Northgate (undecided), Riverside (withdrawn) or Oakfield (still shortlisted); a second run
  sends nothing; Valley's decision changed afterwards is listed in the next digest and not re-sent.

Every e-mail reaches the SMTP server once; each school's mail goes only to addresses that were on its own e-mail.
The last digest, with every staff section in it, is drawn in Chromium at phone and desktop widths.
"""
from __future__ import annotations

import csv
import io
import os
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import pytest
from openpyxl import load_workbook

from rules.outcomes import StaffDecision
from samples.applications import LONDON, SCHOOLS, School
from samples.mail import build_email
from tests.test_cli import hubbot
from tests.test_digest_render import assert_reads_at
from tests.test_imap_worker import PASSWORD_ENV, ok, run_once
from tests.test_reminders import HUB_ADDRESS, PID, STAFF, form_email, person
from tests.test_workflow import Bot, write_config

pytestmark = pytest.mark.slow

VALLEY, STANNES, HILLSIDE, RIVERSIDE = SCHOOLS
OAKFIELD = School("Oakfield Academy", "145678", "Oak Road", "oakfield.example.sch.uk",
                  (("Mr Paul Grant", "p.grant", "3344556"), ("Ms Nadia Khan", "n.khan", "4455667"),
                   ("Mr Leo Murphy", "l.murphy", "5566778"), ("Mrs Iris Novak", "i.novak", "6677889")))
NORTHGATE = School("Northgate High School", "139001", "North Gate", "northgate.example.sch.uk",
                   (("Dr Amy Fox", "a.fox", "7788990"), ("Mr Joe Hart", "j.hart", "8899001"),
                    ("Ms Zoe King", "z.king", "9900112"), ("Mr Max Lowe", "m.lowe", "1029384")))
ALL = (VALLEY, STANNES, HILLSIDE, RIVERSIDE, OAKFIELD, NORTHGATE)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def at(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2024, month, day, hour, minute, tzinfo=LONDON)


def round_config(tmp_path: Path, dovecot, smtp_server, folder: str) -> Path:
    hub = f"""[[hubs]]
id = "central"
name = "Central Maths Hub"
address = "{HUB_ADDRESS}"
programmes = ["{PID}"]
staff = ["{STAFF}"]
[hubs.imap]
host = "{dovecot.host}"
port = {dovecot.port}
security = "none"
username = "{dovecot.user}"
password_env = "{PASSWORD_ENV}"
folder = "{folder}"
timeout_seconds = 10
[hubs.dates."{PID}"]
notifications = [{{ date = "2024-07-05", what = "shortlisted schools informed" }},
                 {{ date = "2024-07-12", what = "selected schools informed" }}]
[hubs.targets]
"{PID}" = 3
"""
    return write_config(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}", hubs=hub,
                        smtp=(smtp_server.host, smtp_server.port),
                        extra="[schedule]\nattach_export = true\n")


def deliver(dovecot, folder: str, raw: bytes, when: datetime) -> None:
    """Append with the server's receipt time (INTERNALDATE) set to ``when``, as if it had arrived then."""
    with dovecot.client() as client:
        client.append(folder, raw, msg_time=when)
        client.logout()


def cli(config: Path, *args: str, now: datetime):
    return hubbot(*args, "--config", str(config), "--now", now.isoformat(), cwd=config.parent)


def school_of(address: str) -> str:
    domain = address.rpartition("@")[2]
    return next((s.name for s in ALL if s.domain == domain), "staff" if address == STAFF else address)


def test_a_whole_round(tmp_path: Path, dovecot, smtp_server) -> None:
    os.environ.pop(PASSWORD_ENV, None)
    folder = dovecot.new_folder()
    config = round_config(tmp_path, dovecot, smtp_server, folder)
    mail = smtp_server.received

    def run(now: datetime) -> int:
        before = len(mail)
        ok(run_once(config, dovecot, now=now))
        return len(mail) - before

    # ---- 20 June: six applications, St Anne's URN one digit short ------------------------------------------
    first = at(6, 20, 10)
    for school in ALL:
        changes = {"school.urn": "14023"} if school is STANNES else None
        deliver(dovecot, folder, form_email(school, received=first, changes=changes), first)
    assert run(at(6, 20, 12)) == 6 + 1                       # five acknowledgements, one "missing", the digest
    bot = Bot(config)
    try:
        ids = {a.school_name: a.id for a in bot.applications()}
        assert len(ids) == 6
        stannes_reply = next(r for r in mail if r.message["To"] and "stannes" in str(r.message["To"]))
        assert "(we read \"14023\")" in stannes_reply.message.get_body(("plain",)).get_content()

        # ---- 21 June: the corrected form, and Riverside asks to withdraw ------------------------------------
        corrected = at(6, 21, 9)
        deliver(dovecot, folder, form_email(STANNES, received=corrected), corrected)
        deliver(dovecot, folder, build_email(sender="School Office <office@riverside.example.sch.uk>", to=HUB_ADDRESS,
                                   subject="Work Group application",
                                   body_text="Dear colleagues,\n\nPlease withdraw our application: we cannot "
                                             "release two teachers next year.\n\nAnne Walsh",
                                   date=corrected, received=corrected,
                                   message_id="<withdraw@riverside.example.sch.uk>"), corrected)
        assert run(at(6, 21, 12)) == 2 + 1                   # St Anne's acknowledged, Riverside's receipt, digest
        digest = mail[-1].message
        assert "daily digest, Friday 21 June 2024: 1 new" in str(digest["Subject"])
        body = digest.get_body(("plain",)).get_content()
        assert "ASKING TO WITHDRAW (1)" in body and f"No. {ids[RIVERSIDE.name]} Riverside Community School" in body
        apps = {a.school_name: a for a in bot.applications()}
        assert len(apps) == 6 and apps[STANNES.name].school_urn == STANNES.urn
        assert len(bot.versions(ids[STANNES.name])) == 2

        # ---- 24 June: decisions, by the three routes ------------------------------------------------------
        decided = at(6, 24, 10)
        for school, decision in ((VALLEY, "selected"), (RIVERSIDE, "withdrawn"), (OAKFIELD, "shortlisted")):
            done = cli(config, "decide", str(ids[school.name]), "--as", decision, now=decided)
            assert done.returncode == 0, done.stderr

        exported = tmp_path / "applications.csv"
        assert cli(config, "export", "--format", "csv", "-o", str(exported), now=decided).returncode == 0
        rows = list(csv.reader(io.StringIO(exported.read_text(encoding="utf-8-sig"))))
        number, decision = rows[0].index("number"), rows[0].index("decision")
        for row in rows[1:]:
            if int(row[number]) == ids[STANNES.name]:
                row[decision] = "Waitlisted"
        filled = tmp_path / "filled.csv"
        with filled.open("w", newline="", encoding="utf-8") as out:
            csv.writer(out).writerows(rows)
        dry = cli(config, "decide", "--import", str(filled), now=decided)
        assert dry.returncode == 0 and "1 decision(s) would be recorded" in dry.stdout
        assert bot.applications()[ids[STANNES.name] - 1].decision is None
        applied = cli(config, "decide", "--import", str(filled), "--apply", now=decided)
        assert applied.returncode == 0 and "1 decision(s) recorded" in applied.stdout

        workbook_path = tmp_path / "applications.xlsx"
        assert cli(config, "export", "--format", "xlsx", "-o", str(workbook_path), now=decided).returncode == 0
        workbook = load_workbook(workbook_path)
        ws = workbook[PID]
        header = [c.value for c in ws[1]]
        n_col, d_col = header.index("Number") + 1, header.index("Decision") + 1
        for r in range(2, ws.max_row + 1):
            if ws.cell(row=r, column=n_col).value == ids[HILLSIDE.name]:
                ws.cell(row=r, column=d_col, value="declined")
            if ws.cell(row=r, column=n_col).value == ids[NORTHGATE.name]:
                ws.cell(row=r, column=d_col, value="probably")
        ws.cell(row=ws.max_row + 1, column=n_col, value=999)
        ws.cell(row=ws.max_row, column=d_col, value="selected")
        buffer = io.BytesIO()
        workbook.save(buffer)
        staff_file = [("decisions.xlsx", buffer.getvalue(), XLSX)]
        deliver(dovecot, folder, build_email(sender=f"Hub Lead <{STAFF}>", to=HUB_ADDRESS, subject="Decisions, 24 June",
                                   body_text="Decisions attached.", attachments=staff_file, date=decided,
                                   received=decided, message_id="<decisions-1@central.example.org>"), decided)
        # A stranger's file naming Northgate selected: nothing recorded, no decisions answer.
        deliver(dovecot, folder, build_email(sender="someone@northgate.example.sch.uk", to=HUB_ADDRESS,
                                   subject="Decisions", body_text="Here you are.", attachments=staff_file,
                                   date=decided, received=decided, message_id="<decisions-2@example.org>"), decided)
        assert run(at(6, 24, 12)) == 1 + 1                   # the answer to the staff member, the digest
        answer = mail[-2] if "Decisions recorded" in str(mail[-2].message["Subject"]) else mail[-1]
        assert str(answer.message["Subject"]) == "Decisions recorded: 1 changed, 2 refused"
        assert answer.rcpt_tos == [STAFF]
        text = answer.message.get_body(("plain",)).get_content()
        assert "no application has the number 999" in text and '"probably" is not a decision' in text
        assert {a.school_name: a.decision for a in bot.applications()} == {
            VALLEY.name: StaffDecision.SELECTED, STANNES.name: StaffDecision.WAITLISTED,
            HILLSIDE.name: StaffDecision.DECLINED, RIVERSIDE.name: StaffDecision.WITHDRAWN,
            OAKFIELD.name: StaffDecision.SHORTLISTED, NORTHGATE.name: None}
        routes = Counter(e.detail["route"] for e in bot.events("decision_recorded"))
        assert routes == {"command": 3, "import": 1, "e-mail": 1}

        # ---- July: the staff notices, the shortlist e-mail, the outcome e-mails ----------------------------
        assert run(at(7, 2, 9, 30)) == 1 + 1                 # the staff notice before 5 July, the digest
        notice = next(r for r in mail[-2:] if "where things stand" in str(r.message["Subject"]))
        body = notice.message.get_body(("plain",)).get_content()
        assert "NO DECISION YET (1)" in body and f"No. {ids[NORTHGATE.name]} Northgate High School" in body

        assert run(at(7, 5, 9, 5)) == 1 + 1                  # Oakfield's shortlist e-mail, the digest
        assert run(at(7, 9, 9, 30)) == 1 + 1                 # the staff notice before 12 July, the digest
        notice = next(r for r in mail[-2:] if "where things stand" in str(r.message["Subject"]))
        body = notice.message.get_body(("plain",)).get_content()
        assert "NO DECISION YET (1)" in body and "STILL SHORTLISTED (1)" in body

        assert run(at(7, 12, 8, 59)) == 1                    # only the digest: nothing before 09:00
        assert run(at(7, 12, 9, 0)) == 3                     # one outcome e-mail each
        outcomes = mail[-3:]
        assert sorted((school_of(r.message["To"].addresses[0].addr_spec), str(r.message["Subject"]).split(":")[0])
                      for r in outcomes) == [
            ("Hillside Academy", "Your application"),
            ("St Anne's C of E Primary", "Your application is on the waiting list"),
            ("Valley School", "Your school has been selected")]
        assert run(at(7, 12, 10, 0)) == 0                    # a second run sends nothing

        done = cli(config, "decide", str(ids[VALLEY.name]), "--as", "waitlisted", now=at(7, 12, 11))
        assert done.returncode == 0
        assert run(at(7, 12, 11, 30)) == 0                   # changed after its e-mail: never re-sent on its own
        assert run(at(7, 13, 8, 0)) == 1                     # the next digest lists the change
        digest = mail[-1].message
        body = digest.get_body(("plain",)).get_content()
        assert "DECISION CHANGED AFTER THE SCHOOL WAS TOLD (1)" in body and "told selected" in body
        (attachment,) = list(digest.iter_attachments())
        assert attachment.get_filename() == "applications-central-2024-07-13.xlsx"
        assert "hubbot " not in body
        page = digest.get_body(("html",)).get_content()
    finally:
        bot.close()

    # ---- every e-mail once, and each school's only to its own e-mail's addresses ------------------------------
    assert set(Counter(str(r.message["Message-ID"]) for r in mail).values()) == {1}
    by_school: dict[str, list[str]] = defaultdict(list)
    for r in mail:
        recipients = {school_of(a) for a in r.rcpt_tos}
        assert len(recipients) == 1, recipients          # never one school's mail to another
        by_school[recipients.pop()].append(str(r.message["Subject"]))
        for address in r.rcpt_tos:
            if address != STAFF:
                school = next(s for s in ALL if address.endswith(s.domain))
                on_the_email = {f"office@{school.domain}"} | {person(school, role)[1]
                                                              for role in ("head", "hod", "teacher1", "teacher2")}
                assert address in on_the_email
    assert [s.split(":")[0] for s in by_school[NORTHGATE.name]] == ["Application received"]
    assert [s.split(":")[0] for s in by_school[RIVERSIDE.name]] == ["Application received",
                                                                     "Your request to withdraw"]
    assert [s.split(":")[0] for s in by_school[OAKFIELD.name]] == ["Application received",
                                                                    "Your application has been shortlisted"]
    assert [s.split(":")[0] for s in by_school[STANNES.name]] == [
        "Action needed", "Application received", "Your application is on the waiting list"]
    staff_subjects = by_school["staff"]
    assert sum("daily digest" in s for s in staff_subjects) == 8     # 20, 21, 24 June; 2, 5, 9, 12, 13 July
    assert sum("where things stand" in s for s in staff_subjects) == 2
    assert sum(s.startswith("Decisions recorded") for s in staff_subjects) == 1
    if os.environ.get("HUBBOT_SHOW_ROUND"):
        for who, subjects in by_school.items():
            print(f"{who}:", *(s.strip() for s in subjects), sep="\n    ")

    for width in (390, 1000):
        assert_reads_at(page, width, tmp_path)
