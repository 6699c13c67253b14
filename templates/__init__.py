"""Every e-mail hubbot sends, as a template trio: ``<name>.subject.j2``, ``<name>.txt.j2`` and ``<name>.html.j2``,
rendered by one function, ``render_email``. The HTML environment autoescapes; none of them may use a value that
was not handed in, so a typo in a template fails loudly in tests instead of sending a blank."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import jinja2


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@cache
def _environments() -> tuple[jinja2.Environment, jinja2.Environment]:
    loader = jinja2.PackageLoader("templates", "")
    common = dict(loader=loader, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                  keep_trailing_newline=False)
    return jinja2.Environment(autoescape=False, **common), jinja2.Environment(autoescape=True, **common)


def render_email(name: str, context: dict[str, Any]) -> RenderedEmail:
    plain, html = _environments()
    subject = plain.get_template(f"{name}.subject.j2").render(context)
    # A subject is one header line: nothing a school typed may break it into two.
    subject = " ".join(subject.split())
    return RenderedEmail(
        subject=subject,
        text=plain.get_template(f"{name}.txt.j2").render(context).strip() + "\n",
        html=html.get_template(f"{name}.html.j2").render({"title": subject, **context}),
    )
