"""The deployment files in ``deploy/``: the systemd unit passes ``systemd-analyze verify`` with no warning (its
ExecStart pointed at this checkout's ``hubbot``) and says what the service promises (restart on failure, SIGTERM,
a stop timeout, an unprivileged user); the compose file loads as YAML, has the structure the docs describe (hubbot
after a healthy PostgreSQL, secrets only by interpolation from the environment, the config read-only) and, where a
compose client is installed, ``config`` accepts it; the Dockerfile builds on python:3.11-slim as a non-root user
with ``pip install .[postgres]`` and no test extras, and copies every package pyproject.toml ships. The image itself
is built only where a container engine answers and ``HUBBOT_TEST_DOCKER=1`` asks for it.
"""
from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str                     # systemd keys are case-sensitive
    parser.read_string((DEPLOY / "hubbot.service").read_text())
    return parser


def test_systemd_unit_says_what_the_service_promises() -> None:
    service = unit()["Service"]
    assert service["ExecStart"].split()[-1] == "run" and service["ExecStart"].split()[0].endswith("/hubbot")
    assert service["Restart"] == "on-failure" and service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) >= 30 and service["User"] not in ("", "root")
    assert service["Environment"].startswith("HUBBOT_CONFIG=")
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd): only the ini parse test ran")
    hubbot = Path(sys.executable).parent / "hubbot"
    if not hubbot.exists():
        pytest.skip("no installed hubbot script to point ExecStart at")
    text = (DEPLOY / "hubbot.service").read_text().replace("/opt/hubbot/venv/bin/hubbot", str(hubbot))
    (tmp_path / "hubbot.service").write_text(text)
    result = subprocess.run([analyze, "verify", str(tmp_path / "hubbot.service")], capture_output=True, text=True,
                            timeout=60)
    # verify exits 0 on a key it cannot parse and only prints a warning: any output is a failure here.
    assert result.returncode == 0 and result.stdout.strip() == "" and result.stderr.strip() == "", result.stderr


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_file_structure() -> None:
    data = compose()
    hubbot, db = data["services"]["hubbot"], data["services"]["db"]
    assert (DEPLOY / hubbot["build"]["context"] / hubbot["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    assert hubbot["depends_on"]["db"]["condition"] == "service_healthy" and db["healthcheck"]["test"]
    assert hubbot["stop_signal"] == "SIGTERM" and hubbot["restart"] == "unless-stopped"
    assert db["image"].startswith("postgres:")
    assert any(v.endswith(":/etc/hubbot/hubbot.toml:ro") for v in hubbot["volumes"])
    assert set(data["volumes"]) >= {"db-data", "hubbot-data"}
    # Secrets only by interpolation from the environment, never written in the file.
    for service in (hubbot, db):
        for key, value in service["environment"].items():
            if re.search("PASSWORD|SECRET|TOKEN", key):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+(:[?-][^}]*)?\}", str(value)), (key, value)


def test_compose_client_accepts_it() -> None:
    env = {**os.environ, "HUBBOT_DB_PASSWORD": "x"}
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True) \
        if shutil.which("docker") else None
    if plugin is not None and plugin.returncode == 0:
        command = ["docker", "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "-q"]
    elif shutil.which("docker-compose"):
        command = ["docker-compose", "-f", str(DEPLOY / "compose.yaml"), "config", "-q"]
    else:
        pytest.skip("no compose client (`docker compose` plugin or docker-compose): the YAML structure test ran")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, cwd=DEPLOY)
    assert result.returncode == 0, result.stderr
    missing = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=DEPLOY,
                             env={k: v for k, v in env.items() if k != "HUBBOT_DB_PASSWORD"})
    assert missing.returncode != 0 and "HUBBOT_DB_PASSWORD" in missing.stderr


def test_dockerfile_is_slim_unprivileged_and_complete() -> None:
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    installs = [line for line in lines if "pip install" in line]
    assert installs and all('".[postgres]"' in line and "test" not in line for line in installs)
    assert "STOPSIGNAL SIGTERM" in lines and any(line.startswith("ENTRYPOINT") and "hubbot" in line for line in lines)
    copied = {line.split()[1] for line in lines if line.startswith("COPY ")}
    for source in copied:
        assert (REPO / source).exists(), source
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert {p.split(".")[0] for p in packages} <= copied | {"pyproject.toml", "README.md"}
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "tests" in ignored


@pytest.mark.slow
def test_image_builds() -> None:
    if os.environ.get("HUBBOT_TEST_DOCKER") != "1":
        pytest.skip("set HUBBOT_TEST_DOCKER=1 to build the image (needs a container engine and the registry)")
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no container engine answers `docker info`")
    result = subprocess.run(["docker", "build", "-f", "deploy/Dockerfile", "-t", "hubbot:test", "."], cwd=REPO,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    version = subprocess.run(["docker", "run", "--rm", "hubbot:test", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("hubbot ")
