"""Recognise which programme's form a document is, from its content: the title patterns of each definition and
how many of its section headings and field labels appear. File names never decide it."""
from __future__ import annotations

from dataclasses import dataclass

from parsers.types import FormDocument
from rules.definitions import ProgrammeDefinition, Registry
from rules.text import normalise

# A document must carry this share of a form's headings and labels to count as that form without its title, or
# this lower share with it: a cover letter quoting the programme's name is not the form.
_SHARE_WITHOUT_TITLE = 0.75
_SHARE_WITH_TITLE = 0.4
_TITLE_ZONE = 4000   # characters from the start of the document


@dataclass(frozen=True)
class Recognition:
    programme: ProgrammeDefinition
    title_found: bool
    label_share: float

    @property
    def score(self) -> float:
        return self.label_share + (1.0 if self.title_found else 0.0)


_MARKERS: dict[str, frozenset[str]] = {}


def _label_share(text: str, programme: ProgrammeDefinition) -> float:
    markers = _MARKERS.get(programme.source + programme.id)
    if markers is None:
        markers = frozenset({normalise(s) for s in programme.sections} | {normalise(f.label) for f in programme.fields})
        _MARKERS[programme.source + programme.id] = markers
    return sum(1 for m in markers if m in text) / len(markers)


def recognise(document: FormDocument, registry: Registry) -> Recognition | None:
    """The best-matching programme, or None when the document is not one of the known forms."""
    raw = document.all_text()
    text = normalise(raw)
    head = normalise(raw[:_TITLE_ZONE])
    best: Recognition | None = None
    for programme in registry.programmes:
        # A form's title is printed at its top; searching only there keeps long statements out of the scan.
        title = any(p.search(head) for p in programme.title_patterns)
        share = _label_share(text, programme)
        if share >= _SHARE_WITHOUT_TITLE or (title and share >= _SHARE_WITH_TITLE):
            candidate = Recognition(programme, title, share)
            if best is None or candidate.score > best.score:
                best = candidate
    return best
