"""End-to-end worker throughput and latency against a throwaway Dovecot and aiosmtpd (started with the helpers of
``tests/servers.py``), with a SQLite database in a temporary directory. (a) APPEND N (default 1,000) mixed messages
(about 60% .docx applications with assorted faults, 10% PDF forms, 15% questions and other mail for a person, 15%
out-of-office and bounces), drain them with one ``Worker.run_once`` in a fresh process, and print messages/s,
replies/s and that process's peak RSS beside the check pipeline's own throughput (``rules.pipeline.assess`` over the
same bytes, in-process) and the ratio; (b) time ``Worker.poll`` with no new mail in a mailbox of M (default 10,000)
already-processed messages, median of 20 (goal under 50 ms); (c) run the ``hubbot run`` service with IMAP IDLE and
measure APPEND-to-reply latency at aiosmtpd, 20 samples, p50/p95 (goal p95 under 5 s). Usage:
``python bench/mailbox_bench.py [-n 1000] [--idle-mailbox 10000] [--idle-samples 20] [--skip a,b,c]``.
Timings are for reading, never for pass/fail.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from samples.applications import LONDON, application_email, complete_answers, fill_form, programme  # noqa: E402
from samples.mail import (  # noqa: E402
    bounce_report,
    build_email,
    forgot_attachment_email,
    mailing_list_post,
    out_of_office,
    question_email,
)
from samples.pdf import docx_to_pdf, libreoffice_available  # noqa: E402
from tests.servers import DOVECOT, DovecotServer, free_port, start_smtp_server  # noqa: E402

PID = "secondary-tfm-wg-2024"
HUB = programme(PID).hub.address
PASSWORD_ENV = "HUBBOT_BENCH_IMAP_PASSWORD"
PDF_TYPE = "application/pdf"
START = datetime(2024, 6, 3, 9, 0, tzinfo=LONDON)
# (fields left out, copy pattern, URN override): the faults schools make, cycled through.
FAULTS: list[tuple[tuple[str, ...], str, str | None]] = [
    ((), "all", None), ((), "all", None), (("teacher1.trn",), "all", None), ((), "one_missing", None),
    (("school.telephone", "hod.email"), "all", None), ((), "all", "12345"), ((), "none", None),
    (("teacher2.name", "teacher2.email"), "in_to", None), ((), "upper", None), (("maths_hub",), "sender_is_signatory", None),
]


# ---- building the mail ----------------------------------------------------------------------------------------

def _application(i: int, *, pdf_cache: dict[int, bytes] | None = None) -> bytes:
    drop, pattern, urn = FAULTS[i % len(FAULTS)]
    answers = {k: v for k, v in complete_answers(PID).items() if k not in drop}
    answers["school.urn"] = urn or f"{100000 + i:06d}"
    answers["school.name"] = f"Valley School {i}"
    docx = fill_form(PID, answers)
    when = START + timedelta(minutes=i)
    kwargs = dict(answers=answers, pattern=pattern, received=when,
                  message_id=f"<bench-app-{i}@valley.example.sch.uk>")
    if pdf_cache is None:
        return application_email(PID, docx, **kwargs)
    key = i % 10   # ten distinct PDFs (LibreOffice is slow; conversions are cached on disk too)
    if key not in pdf_cache:
        pdf_cache[key] = docx_to_pdf(docx)
    return application_email(PID, pdf_cache[key], filename="Application form.pdf", content_type=PDF_TYPE, **kwargs)


def _other(i: int) -> bytes:
    when = START + timedelta(minutes=i)
    kind = i % 4
    if kind == 0:
        return question_email(to=HUB, subject=f"Question {i} about the Work Group", date=when)
    if kind == 1:
        return forgot_attachment_email(to=HUB, subject=f"Application {i}", date=when)
    if kind == 2:
        return mailing_list_post(to=HUB, date=when)
    return build_email(sender=f"Parent {i} <parent{i}@example.com>", to=HUB, subject=f"Thank you {i}",
                       body_text="Thank you for the lovely workshop last week.", date=when)


def _automatic(i: int) -> bytes:
    when = START + timedelta(minutes=i)
    if i % 2:
        styles = ["exchange", "gmail", "x-autoreply", "subject-only"]
        return out_of_office(to=HUB, original_subject=f"Your application {i}", style=styles[i % 4], date=when)
    return bounce_report(to=HUB, failed_recipient=f"gone{i}@valley.example.sch.uk", date=when)


def build_mix(n: int) -> tuple[list[bytes], dict[str, int]]:
    use_pdf = libreoffice_available()
    pdf_cache: dict[int, bytes] = {}
    mail: list[bytes] = []
    counts = {"docx": 0, "pdf": 0, "other": 0, "automatic": 0}
    for i in range(n):
        slot = i % 20          # 12 docx, 2 pdf, 3 other, 3 automatic in every 20
        if slot < 12 or (slot < 14 and not use_pdf):
            mail.append(_application(i)); counts["docx"] += 1
        elif slot < 14:
            mail.append(_application(i, pdf_cache=pdf_cache)); counts["pdf"] += 1
        elif slot < 17:
            mail.append(_other(i)); counts["other"] += 1
        else:
            mail.append(_automatic(i)); counts["automatic"] += 1
    return mail, counts


# ---- servers and config ---------------------------------------------------------------------------------------

def start_dovecot() -> DovecotServer:
    if not Path(DOVECOT).exists():
        sys.exit(f"Dovecot not installed at {DOVECOT}")
    root = Path(tempfile.mkdtemp(prefix="hubbot-bench-dovecot-"))
    root.chmod(0o755)
    server = DovecotServer(root=root, port=free_port())
    server.write_config()
    server.start()
    return server


def append_many(dovecot: DovecotServer, folder: str, messages: list[bytes]) -> float:
    """APPEND everything over one connection (MULTIAPPEND in chunks when offered); returns seconds taken."""
    started = time.perf_counter()
    with dovecot.client() as client:
        multi = client.has_capability("MULTIAPPEND")
        for start in range(0, len(messages), 200):
            chunk = messages[start:start + 200]
            if multi:
                client.multiappend(folder, chunk)
            else:
                for raw in chunk:
                    client.append(folder, raw)
        client.logout()
    return time.perf_counter() - started


def write_config(directory: Path, dovecot: DovecotServer, smtp, folder: str, *, idle: bool = False,
                 poll_minutes: float = 5) -> Path:
    path = directory / "hubbot.toml"
    path.write_text(f"""max_replies_per_address_per_day = 1000000
[database]
url = "sqlite:///{directory / 'hubbot.db'}"
[smtp]
host = "{smtp.host}"
port = {smtp.port}
security = "none"
[limits]
per_hub_per_hour = 1000000
[schedule]
poll_every_minutes = {poll_minutes}
outbox_every_seconds = 1
[[hubs]]
id = "central"
name = "Central Maths Hub"
address = "{HUB}"
programmes = ["{PID}"]
[hubs.imap]
host = "{dovecot.host}"
port = {dovecot.port}
security = "none"
username = "{dovecot.user}"
password_env = "{PASSWORD_ENV}"
folder = "{folder}"
idle = {"true" if idle else "false"}
""")
    return path


def _worker(config_path: Path):
    from bot.config import load_config
    from bot.context import check_settings
    from bot.worker import Worker
    from storage.db import open_database

    config = load_config(config_path)
    # The bench fills the mailbox first: its first poll answers all of it.
    return Worker(config, open_database(config.database_url), check_settings(config),
                  backfill=datetime(1970, 1, 1, tzinfo=LONDON))


def _drain_in_child(config_path: str, queue) -> None:
    worker = _worker(Path(config_path))
    started = time.perf_counter()
    report = worker.run_once()
    elapsed = time.perf_counter() - started
    queue.put({"seconds": elapsed, "stored": sum(report.fetched.values()), "processed": len(report.outcomes),
               "failed": report.failed_messages, "sent": report.outbox.sent, "errors": report.mailbox_errors,
               "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss})


# ---- the three measurements -----------------------------------------------------------------------------------

def bench_throughput(dovecot: DovecotServer, n: int, work: Path) -> None:
    print(f"(a) throughput: building {n} messages ...", flush=True)
    t = time.perf_counter()
    mail, counts = build_mix(n)
    print(f"    built in {time.perf_counter() - t:.1f}s: {counts}"
          + ("" if libreoffice_available() else " (no LibreOffice: PDFs replaced by docx)"))
    folder = dovecot.new_folder()
    print(f"    APPEND {n}: {append_many(dovecot, folder, mail):.1f}s")
    smtp = start_smtp_server()
    try:
        directory = work / "a"
        directory.mkdir()
        config = write_config(directory, dovecot, smtp, folder)
        ctx = multiprocessing.get_context("spawn")   # a fresh process: its peak RSS is the worker's own
        queue = ctx.Queue()
        child = ctx.Process(target=_drain_in_child, args=(str(config), queue))
        child.start()
        result = queue.get(timeout=3600)
        child.join()
        received = len(smtp.received)
    finally:
        smtp.controller.stop()
    secs = result["seconds"]
    print(f"    run_once: {secs:.1f}s  stored={result['stored']} processed={result['processed']} "
          f"failed={result['failed']} sent={result['sent']} (aiosmtpd received {received}) errors={result['errors']}")
    print(f"    worker:   {result['processed'] / secs:7.1f} messages/s   {result['sent'] / secs:7.1f} replies/s   "
          f"peak RSS {result['maxrss_kb'] / 1024:.0f} MiB")

    from bot.config import load_config
    from bot.context import check_settings
    from rules.pipeline import assess

    settings = check_settings(load_config(config))
    assess(mail[0], settings)   # warm-up: registry, templates, imports
    t = time.perf_counter()
    for raw in mail:
        assess(raw, settings)
    pipeline_secs = time.perf_counter() - t
    pipeline_rate = len(mail) / pipeline_secs
    worker_rate = result["processed"] / secs
    print(f"    pipeline: {pipeline_rate:7.1f} messages/s (assess only, in-process, {pipeline_secs:.1f}s)")
    print(f"    ratio worker/pipeline throughput: {worker_rate / pipeline_rate:.2f} "
          f"(the worker spends {secs / pipeline_secs:.2f}x the pipeline's time)")


def bench_empty_poll(dovecot: DovecotServer, m: int, work: Path) -> None:
    print(f"(b) poll with no new mail in a mailbox of {m} processed messages", flush=True)
    folder = dovecot.new_folder()
    small = [build_email(sender=f"Sender {i} <s{i}@example.com>", to=HUB, subject=f"Note {i}",
                         body_text="Just a short note.", date=START + timedelta(seconds=i),
                         extra_headers=[("Auto-Submitted", "auto-generated")]) for i in range(m)]
    print(f"    APPEND {m}: {append_many(dovecot, folder, small):.1f}s")
    smtp = start_smtp_server()
    try:
        directory = work / "b"
        directory.mkdir()
        worker = _worker(write_config(directory, dovecot, smtp, folder))
        t = time.perf_counter()
        report = worker.run_once()
        print(f"    first run_once (store and process all): {time.perf_counter() - t:.1f}s, "
              f"processed {len(report.outcomes)}")
        hub = worker.config.hubs[0]
        samples, cold = [], []
        for _ in range(20):
            # The worker keeps its IMAP connection between polls, as `hubbot run` does.
            t = time.perf_counter()
            stored = worker.poll(hub)
            samples.append((time.perf_counter() - t) * 1000)
            assert stored == 0
        for _ in range(10):
            worker.close()   # a poll that must connect and log in first (the first poll after a restart)
            t = time.perf_counter()
            assert worker.poll(hub) == 0
            cold.append((time.perf_counter() - t) * 1000)
        worker.close()
    finally:
        smtp.controller.stop()
    print(f"    empty poll (connection kept: EXAMINE, UID SEARCH): median {statistics.median(samples):.1f} ms,"
          f" min {min(samples):.1f} ms, max {max(samples):.1f} ms (goal < 50 ms)")
    print(f"    empty poll after reconnecting (connect, login, EXAMINE, UID SEARCH): median "
          f"{statistics.median(cold):.1f} ms")


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def bench_idle_latency(dovecot: DovecotServer, samples: int, work: Path) -> None:
    print(f"(c) IMAP IDLE: APPEND -> reply at aiosmtpd, {samples} samples", flush=True)
    folder = dovecot.new_folder()
    smtp = start_smtp_server()
    directory = work / "c"
    directory.mkdir()
    config = write_config(directory, dovecot, smtp, folder, idle=True, poll_minutes=10)
    env = {**os.environ, "PYTHONPATH": str(REPO), PASSWORD_ENV: dovecot.password}
    env.pop("HUBBOT_CRASH_AT", None)
    log = open(directory / "service.log", "w")
    service = subprocess.Popen([sys.executable, "-m", "bot.cli", "run", "--config", str(config), "--backfill",
                                "1970-01-01T00:00:00+00:00"], cwd=directory,
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    latencies: list[float] = []
    missed = 0
    try:
        time.sleep(4)   # the first scheduled poll and the IDLE watcher's connection
        for i in range(samples):
            raw = forgot_attachment_email(to=HUB, subject=f"Idle application {i}",
                                          date=datetime.now(LONDON).replace(microsecond=0) + timedelta(seconds=i))
            before = len(smtp.received)
            t = time.perf_counter()
            dovecot.append(raw, folder)
            while len(smtp.received) == before and time.perf_counter() - t < 30:
                time.sleep(0.01)
            if len(smtp.received) == before:
                missed += 1
            else:
                latencies.append(time.perf_counter() - t)
            time.sleep(0.3)
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(timeout=20)
        except subprocess.TimeoutExpired:
            service.kill()
        log.close()
        smtp.controller.stop()
    if latencies:
        print(f"    p50 {_percentile(latencies, 0.5):.2f}s  p95 {_percentile(latencies, 0.95):.2f}s  "
              f"max {max(latencies):.2f}s  (goal p95 < 5 s); no reply within 30 s: {missed}; "
              f"service exit code {service.returncode}")
    else:
        print(f"    no reply arrived within 30 s for any of {samples} samples; see {directory / 'service.log'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="messages for (a) (default 1000)")
    parser.add_argument("--idle-mailbox", type=int, default=10_000, help="mailbox size for (b) (default 10000)")
    parser.add_argument("--idle-samples", type=int, default=20, help="samples for (c) (default 20)")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: a,b,c")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    os.environ[PASSWORD_ENV] = ""
    dovecot = start_dovecot()
    os.environ[PASSWORD_ENV] = dovecot.password
    work = Path(tempfile.mkdtemp(prefix="hubbot-bench-"))
    print(f"hubbot mailbox bench: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, SQLite in {work}")
    try:
        if "a" not in skip:
            bench_throughput(dovecot, args.n, work)
        if "b" not in skip:
            bench_empty_poll(dovecot, args.idle_mailbox, work)
        if "c" not in skip:
            bench_idle_latency(dovecot, args.idle_samples, work)
    finally:
        dovecot.stop()
        shutil.rmtree(dovecot.root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
