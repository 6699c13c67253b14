"""The HTML digest as a mail client shows it: the realistic day of ``test_digest`` rendered to HTML and drawn by
headless Chromium into a PNG, which must exist, be a valid PNG of the requested size and not be blank. The HTML
itself must suit e-mail clients: no scripts, no <style> blocks or external stylesheets (inline styles only),
tables for layout, and a school name containing markup shown as text.
"""
from __future__ import annotations

import html
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.staff.digest import render_digest
from templates import RenderedEmail
from tests.test_digest import DIGEST_AT, NORTHGATE, build, central_bot, realistic_day

CHROMIUM = "/usr/bin/chromium"
WIDTH, HEIGHT = 900, 2000


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RenderedEmail]:
    tmp = tmp_path_factory.mktemp("digest-render")
    bot = central_bot(tmp)
    try:
        realistic_day(bot, tmp)
        yield render_digest(build(bot, DIGEST_AT))
    finally:
        bot.close()


def test_html_has_no_script_and_inline_styles_only(rendered: RenderedEmail) -> None:
    page = rendered.html.lower()
    assert "<script" not in page and "javascript:" not in page
    assert "<style" not in page
    assert "<link" not in page and "@import" not in page and "stylesheet" not in page
    assert not re.search(r"\son[a-z]+\s*=", page), "no event handler attributes"
    assert page.count('style="') > 50


def test_html_uses_tables_for_layout(rendered: RenderedEmail) -> None:
    page = rendered.html.lower()
    assert page.count("<table") >= 9        # the frame and one table per section
    assert 'role="presentation"' in page
    assert "<div" not in page and "display:flex" not in page and "display:grid" not in page
    assert page.count("<table") == page.count("</table>")


def test_a_school_name_with_markup_is_escaped(rendered: RenderedEmail) -> None:
    assert "Northgate &lt;b&gt;High&lt;/b&gt; School" in rendered.html
    assert "<b>High</b>" not in rendered.html
    assert NORTHGATE.name in html.unescape(rendered.html)
    assert NORTHGATE.name in rendered.text        # plain text shows it as typed


def test_chromium_draws_the_digest(rendered: RenderedEmail, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip(f"{CHROMIUM} is not installed (scripts/test installs it)")
    from PIL import Image

    page = tmp_path / "digest.html"
    page.write_text(rendered.html, encoding="utf-8")
    png = tmp_path / "digest.png"
    profile = tmp_path / "chromium-profile"
    command = [CHROMIUM if Path(CHROMIUM).exists() else str(shutil.which("chromium")),
               "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={png}",
               page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert png.exists(), f"no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"

    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        image.verify()
    with Image.open(png) as image:
        assert image.format == "PNG"
        assert image.size == (WIDTH, HEIGHT)
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 20, "the screenshot is blank or nearly so"
        # The header bar (#1d3557) and the body text are drawn, not just the page background.
        assert any(c[:3] == (0x1d, 0x35, 0x57) for _, c in colours)
        dark = sum(n for n, c in colours if sum(c) < 200)
        assert dark > 2000, "hardly any text drawn"
        # Something is drawn well down the page: the sections below the first few.
        lower = rgb.crop((0, HEIGHT // 2 - 400, WIDTH, HEIGHT // 2))
        assert len(lower.getcolors(maxcolors=1 << 20) or []) > 5
