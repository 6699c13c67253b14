"""Shared pytest setup. The server fixtures live in ``tests/servers.py`` and are imported here so every test module
can ask for ``dovecot``, ``smtp_server``, ``smtp_server_auth``, ``pg_url``, ``fresh_pg_url`` and ``db_url`` by name."""
from __future__ import annotations

from tests.servers import db_url, dovecot, fresh_pg_url, pg_url, smtp_server, smtp_server_auth  # noqa: F401
