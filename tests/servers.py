"""Real servers for the tests, started and stopped by pytest fixtures: a throwaway Dovecot IMAP server (plain login
over loopback, a passwd-file user, Maildir storage in a temporary directory), an aiosmtpd SMTP server that records
what it receives and can be told to answer the next messages with 421/451/550 or to require AUTH (PLAIN, LOGIN or
XOAUTH2), and a PostgreSQL database created per test module on 127.0.0.1:5432 and dropped afterwards. ``db_url``
runs a test once on SQLite and once on PostgreSQL, each time on an empty database. Nothing here needs root or
touches system paths; Dovecot is skipped if ``/usr/sbin/dovecot`` is missing, PostgreSQL if it is unreachable.
"""
from __future__ import annotations

import base64
import collections
import contextlib
import email
import email.policy
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

DOVECOT = os.environ.get("HUBBOT_TEST_DOVECOT", "/usr/sbin/dovecot")
POSTGRES_ADMIN_URL = os.environ.get("HUBBOT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_greeting(port: int, prefix: bytes, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(100).startswith(prefix):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not answer within {timeout}s")


# ---- Dovecot --------------------------------------------------------------------------------------------------

_DOVECOT_CONF = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2 oauthbearer
mail_location = maildir:{root}/mail/%u
default_login_user = {login_user}
default_internal_user = {internal_user}
mail_uid = {mail_user}
mail_gid = {mail_group}
first_valid_uid = 0
last_valid_uid = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
"""


@dataclass
class DovecotServer:
    root: Path
    port: int
    user: str = "hubbot"
    password: str = "s3cret-test-password"
    oauth_token: str = "fake-oauth-token"   # accepted for XOAUTH2: Dovecot checks the bearer token as a password
    process: subprocess.Popen[bytes] | None = None
    _folders: int = 0

    host: str = "127.0.0.1"

    @property
    def conf(self) -> Path:
        return self.root / "dovecot.conf"

    def write_config(self) -> None:
        if os.geteuid() == 0:
            # Dovecot refuses to run its login processes as root, and mail as uid 0.
            login_user, internal_user, mail_user = "dovenull", "dovecot", "dovecot"
        else:
            login_user = internal_user = mail_user = pwd.getpwuid(os.geteuid()).pw_name
        mail_group = mail_user if os.geteuid() == 0 else str(os.getegid())
        self.conf.write_text(_DOVECOT_CONF.format(root=self.root, port=self.port, login_user=login_user,
                                                  internal_user=internal_user, mail_user=mail_user,
                                                  mail_group=mail_group))
        (self.root / "passwd").write_text(f"{self.user}:{{PLAIN}}{self.password}\n"
                                          f"oauthuser:{{PLAIN}}{self.oauth_token}\n")
        mail = self.root / "mail"
        mail.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            entry = pwd.getpwnam(mail_user)
            shutil.chown(mail, entry.pw_uid, entry.pw_gid)

    def start(self) -> None:
        deadline = time.monotonic() + 20
        while True:
            shutil.rmtree(self.root / "run", ignore_errors=True)
            self.process = subprocess.Popen([DOVECOT, "-F", "-c", str(self.conf)], stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT)
            try:
                self.process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                break  # still running: listening
            output = self.process.stdout.read().decode(errors="replace") if self.process.stdout else ""
            # The previous instance's children can hold the port for a moment after a restart.
            if "Address already in use" not in output or time.monotonic() > deadline:
                raise RuntimeError(f"dovecot failed to start: {output}")
            time.sleep(0.2)
        wait_for_greeting(self.port, b"* OK")

    def _children(self, name: str | None = None) -> list[int]:
        """Processes this Dovecot master started (found through /proc, so only our own instance's)."""
        if self.process is None:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
            if fields.get("PPid", "").strip() == str(self.process.pid) and \
                    (name is None or fields.get("Name", "").strip() == name):
                found.append(int(entry.name))
        return found

    def kill_sessions(self) -> None:
        """Drop every IMAP connection at once, as a crashing server or a network cut would."""
        for pid in self._children("imap"):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        if self.process is None:
            return
        # Dovecot lets running sessions finish after the master stops; a restart should cut them.
        self.kill_sessions()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- helpers for tests --

    def client(self) -> Any:
        from imapclient import IMAPClient
        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=10)
        client.login(self.user, self.password)
        return client

    def new_folder(self) -> str:
        """A fresh, empty folder, so tests sharing this server do not see each other's mail."""
        self._folders += 1
        name = f"T{self._folders}x{uuid.uuid4().hex[:6]}"
        with self.client() as client:
            client.create_folder(name)
            client.logout()
        return name

    def append(self, raw: bytes, folder: str = "INBOX", flags: tuple[bytes, ...] = ()) -> int:
        with self.client() as client:
            response = client.append(folder, raw, flags=flags)
            client.logout()
        # "[APPENDUID <uidvalidity> <uid>] Append completed."
        text = response.decode() if isinstance(response, bytes) else str(response)
        return int(text.split("APPENDUID", 1)[1].split()[1].rstrip("]"))

    def flags(self, folder: str, uid: int) -> tuple[bytes, ...]:
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            result = client.get_flags([uid]).get(uid, ())
            client.logout()
        return tuple(result)

    def recreate_folder(self, folder: str, keep_messages: bool = True) -> None:
        """Delete and recreate a folder, which gives it a new UIDVALIDITY (optionally with the same mail)."""
        with self.client() as client:
            kept: list[bytes] = []
            if keep_messages:
                client.select_folder(folder, readonly=True)
                uids = client.search(["ALL"])
                kept = [d[b"BODY[]"] for _, d in sorted(client.fetch(uids, ["BODY.PEEK[]"]).items())] \
                    if uids else []
                client.unselect_folder()
            client.delete_folder(folder)
            client.create_folder(folder)
            for raw in kept:
                client.append(folder, raw)
            client.logout()


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    if not Path(DOVECOT).exists():
        pytest.skip(f"Dovecot not installed at {DOVECOT} (apt-get install -y dovecot-imapd)")
    root = Path(tempfile.mkdtemp(prefix="hubbot-dovecot-"))
    root.chmod(0o755)  # Dovecot's unprivileged processes must reach their sockets and the mail under here
    server = DovecotServer(root=root, port=free_port())
    server.write_config()
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


# ---- SMTP -----------------------------------------------------------------------------------------------------

@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class RecordingHandler:
    """aiosmtpd handler: records accepted mail; ``answers`` holds replies for the next DATA commands."""

    received: list[Received] = field(default_factory=list)
    answers: collections.deque[str] = field(default_factory=collections.deque)
    oauth_tokens: set[str] = field(default_factory=set)
    auth_log: list[tuple[str, str]] = field(default_factory=list)   # (mechanism, login)
    peers: list[Any] = field(default_factory=list)   # the client's (host, port) for each DATA: one per connection
    # Fault modes. ``refuse_rcpt``: address (or "*") -> the answer to its RCPT (a refused Cc, "550 relaying
    # denied"). ``drops``: the next DATA commands end with the connection cut instead of an answer:
    # "accepted" keeps the message first (the answer to the final "." is what is lost), "lost" does not.
    refuse_rcpt: dict[str, str] = field(default_factory=dict)
    drops: collections.deque[str] = field(default_factory=collections.deque)
    # Called with each accepted message (as Microsoft 365 and Gmail save what you send to your Sent folder).
    on_accept: Any = None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        answer = self.refuse_rcpt.get(address.lower()) or self.refuse_rcpt.get("*")
        if answer == "drop":
            server.transport.close()       # the connection lost before DATA: nothing can have been delivered
            return "250 OK"
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.peers.append(session.peer)
        if self.answers:
            return self.answers.popleft()
        drop = self.drops.popleft() if self.drops else None
        if drop != "lost":
            got = Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
            self.received.append(got)
            if self.on_accept is not None:
                self.on_accept(got)
        if drop is not None:
            server.transport.close()
        return "250 2.0.0 OK queued"

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> Any:
        from aiosmtpd.smtp import AuthResult
        if len(args) < 2:
            return AuthResult(success=False, handled=False)
        decoded = base64.b64decode(args[1]).decode()
        parts = dict(p.split("=", 1) for p in decoded.split("\x01") if "=" in p)
        token = parts.get("auth", "").removeprefix("Bearer ")
        ok = token in self.oauth_tokens
        if ok:
            self.auth_log.append(("XOAUTH2", parts.get("user", "")))
        return AuthResult(success=ok, handled=False)


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: RecordingHandler
    users: dict[str, str]
    controller: Any = None

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def fail_next(self, count: int, answer: str) -> None:
        """Answer the next ``count`` messages with e.g. "451 4.3.0 Try again later" instead of accepting them."""
        self.handler.answers.extend([answer] * count)


def start_smtp_server(*, auth_required: bool = False, tls_context: Any = None,
                      require_starttls: bool = False) -> SmtpServer:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    handler = RecordingHandler()
    users = {"hub@example.org": "smtp-test-password"}

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login, password = auth_data.login.decode(), auth_data.password.decode()
            if users.get(login) == password:
                handler.auth_log.append((mechanism, login))
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, authenticator=authenticator,
                            auth_required=auth_required, auth_require_tls=False, tls_context=tls_context,
                            require_starttls=require_starttls)
    controller.start()
    return SmtpServer("127.0.0.1", port, handler, users, controller)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = start_smtp_server()
    try:
        yield server
    finally:
        server.controller.stop()


@pytest.fixture
def smtp_server_auth() -> Iterator[SmtpServer]:
    server = start_smtp_server(auth_required=True)
    try:
        yield server
    finally:
        server.controller.stop()


# ---- PostgreSQL -----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def new_postgres_database(prefix: str = "hubbot_test") -> Iterator[str]:
    """A database created for the block (nothing migrated in it) and dropped afterwards; skips the test when
    PostgreSQL is not there."""
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {type(exc).__name__}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A fresh database for this test module, dropped afterwards."""
    with new_postgres_database() as url:
        yield url


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """A database of this test's own that has never been migrated (several workers starting on it together)."""
    with new_postgres_database("hubbot_scale") as url:
        yield url


def _empty_postgres(url: str) -> None:
    import psycopg
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database URL (nothing migrated yet), once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hubbot.db'}"
    url: str = request.getfixturevalue("pg_url")
    _empty_postgres(url)
    return url
