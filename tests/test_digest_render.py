"""The HTML digest as a mail client shows it: the realistic day of ``test_digest`` rendered to HTML and drawn by
headless Chromium into a PNG, which must exist, be a valid PNG of the requested size and not be blank. It must read
on a phone and on a desktop: drawn 390 px wide and 1000 px wide, the page is not blank and nothing sticks out
sideways (``document.documentElement.scrollWidth <= innerWidth``). Chromium will not make a window narrower than
500 px, so the page is measured inside an iframe of the exact width (``srcdoc``, same origin, so the wrapper's
script can measure it; the digest itself carries no script). The HTML itself must suit e-mail clients: no
scripts, no <style> blocks or external stylesheets (inline styles only), tables for layout, and a school name
containing markup shown as text.
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


def _chromium() -> str:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    found = shutil.which("chromium")
    if found is None:
        pytest.skip(f"{CHROMIUM} is not installed (scripts/test installs it)")
    return found


def _framed(page: str, width: int, height: int) -> str:
    """A wrapper page showing ``page`` in an iframe exactly ``width`` px wide, whose title becomes the measures."""
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>waiting</title></head>'
            f'<body style="margin:0;background:#000;"><iframe id="f" style="border:0;display:block;width:{width}px;'
            f'height:{height}px" srcdoc="{html.escape(page, quote=True)}"></iframe><script>'
            "const f = document.getElementById('f');"
            "f.addEventListener('load', () => { const d = f.contentDocument;"
            "document.title = [d.documentElement.scrollWidth, f.contentWindow.innerWidth,"
            " d.documentElement.scrollHeight].join(','); });"
            "</script></body></html>")


def assert_reads_at(page: str, width: int, tmp_path: Path, height: int = 1600) -> None:
    """Draw ``page`` ``width`` px wide in headless Chromium: not blank, and nothing sticks out sideways."""
    chromium = _chromium()
    from PIL import Image

    wrapper = tmp_path / f"framed-{width}.html"
    wrapper.write_text(_framed(page, width, height), encoding="utf-8")
    window = f"--window-size={max(width, 500)},{height}"
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / f'profile-{width}'}", window]
    dom = subprocess.run([*base, "--virtual-time-budget=5000", "--dump-dom", wrapper.as_uri()],
                         capture_output=True, text=True, timeout=120)
    found = re.search(r"<title>(\d+),(\d+),(\d+)</title>", dom.stdout)
    assert found, f"no measurements (exit {dom.returncode}): {dom.stderr[-2000:]}"
    scroll_width, inner_width, scroll_height = map(int, found.groups())
    assert inner_width == width
    assert scroll_width <= inner_width, f"{scroll_width - inner_width} px stick out sideways at {width} px"
    assert scroll_height > 1000                     # the whole digest is there, not an empty frame

    png = tmp_path / f"digest-{width}.png"
    subprocess.run([*base, f"--screenshot={png}", wrapper.as_uri()], capture_output=True, timeout=120)
    assert png.exists()
    with Image.open(png) as image:
        frame = image.convert("RGB").crop((0, 0, width, height))
        colours = frame.getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 20, "blank or nearly so"
        assert any(c[:3] == (0x1d, 0x35, 0x57) for _, c in colours)          # the header bar
        text = sum(n for n, c in colours if sum(c) < 200 and c != (0x1d, 0x35, 0x57))   # not the header bar
        assert text > 2000, "hardly any text drawn"
        # Drawn across the frame, not squeezed into a strip: text reaches beyond the middle.
        right = frame.crop((width // 2, 0, width, height)).getcolors(maxcolors=1 << 20) or []
        assert len(right) > 10


@pytest.mark.parametrize("width", [390, 1000], ids=["phone", "desktop"])
def test_the_digest_reads_on_a_phone_and_a_desktop(rendered: RenderedEmail, tmp_path: Path, width: int) -> None:
    assert_reads_at(rendered.html, width, tmp_path)
