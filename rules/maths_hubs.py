"""The list of England's Maths Hubs (``rules/maths_hubs.toml``) and loose matching of a school's answer to it:
"Archimedes", "NE2" and "NE2: Archimedes NE Maths Hub" all name the same hub."""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from rules.text import normalise

_FILLER = re.compile(r"\b(maths?|mathematics|hub|the|and|&)\b|[^\w\s]")


@dataclass(frozen=True)
class MathsHub:
    code: str
    name: str
    aliases: tuple[str, ...] = ()


def _core(name: str) -> str:
    return " ".join(_FILLER.sub(" ", normalise(name)).split())


@cache
def all_hubs() -> tuple[MathsHub, ...]:
    data = tomllib.loads(resources.files("rules").joinpath("maths_hubs.toml").read_text(encoding="utf-8"))
    return tuple(MathsHub(h["code"], h["name"], tuple(h.get("aliases", ()))) for h in data["hubs"])


def match_maths_hub(answer: str) -> MathsHub | None:
    """The hub an answer names, by code or name, ignoring "Maths Hub" and punctuation; None when unclear."""
    text = normalise(answer)
    code = re.search(r"\b([a-z]{2}\d)\b", text)
    hubs = all_hubs()
    if code:
        for hub in hubs:
            if hub.code.lower() == code.group(1):
                return hub
    core = _core(answer)
    if not core:
        return None
    exact = [h for h in hubs if core in {_core(n) for n in (h.name, *h.aliases)}]
    if len(exact) == 1:
        return exact[0]
    # "Archimedes" for "Archimedes NE": the answer's words all start the hub's name; only when unambiguous.
    partial = [h for h in hubs if any(_core(n).startswith(core) or core.startswith(_core(n))
                                      for n in (h.name, *h.aliases))]
    return partial[0] if len(partial) == 1 else None

