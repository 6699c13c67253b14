"""What the bot tells schools about next year's forms: every blank form x every variant (``samples.variants``) x
format, filled correctly, then once more with the school URN genuinely left empty.

For each cell it counts what would be false if said to a school: a field listed as missing though it was answered
(or is not on the form at all), a field called invalid though its answer is right, a value read into the wrong
field, and a form not recognised at all ("your application form did not arrive"). It also counts the honest
outcomes: complete, and review (a person looks first). The empty-URN run checks the other side: a field genuinely
left empty must still be listed as missing. Usage: ``python bench/variant_matrix.py [--formats docx,label,pdf]``
(PDF conversions go through LibreOffice once and are cached).
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rules.pipeline import CheckSettings, assess  # noqa: E402
from samples.applications import FORM_FILES, application_email, complete_answers  # noqa: E402
from samples.forms import FillStyle  # noqa: E402
from samples.variants import VARIANTS, Variant, build_variant, fill_variant, variant_answers  # noqa: E402

PDF_TYPE = "application/pdf"
FORMATS = {"docx": FillStyle.VALUE_CELL, "label": FillStyle.LABEL_CELL, "pdf": FillStyle.VALUE_CELL}
SETTINGS = CheckSettings.builtin()


@dataclass
class Cell:
    status: str
    false_missing: list[str]
    false_invalid: list[str]
    wrong_values: list[str]
    unsure: list[str]
    missing: list[str]


def _collapse(value: str | None) -> str:
    # Letters only, in order: an address's commas, a PDF's line breaks (even inside "small-step") and yes/no's case
    # are how a value is written, not which value it is.
    return "".join(ch for ch in (value or "").lower() if ch.isalnum() or ch in "@.")


def _attachment(variant: Variant, answers: dict[str, str], fmt: str) -> tuple[bytes, str, str]:
    data = fill_variant(variant, answers, style=FORMATS[fmt])
    if fmt == "pdf":
        from samples.pdf import docx_to_pdf

        return docx_to_pdf(data), "Application form.pdf", PDF_TYPE
    return data, "Application form.docx", \
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def judge(variant: Variant, fmt: str, answers: dict[str, str]) -> Cell:
    data, filename, content_type = _attachment(variant, answers, fmt)
    raw = application_email(variant.programme_id, data, filename=filename, content_type=content_type,
                            answers=complete_answers(variant.programme_id))
    verdict = assess(raw, SETTINGS)
    given = {k for k, v in answers.items() if v}
    false_missing = [f for f in verdict.missing_fields if f in given or f in variant.removed]
    false_invalid = [i.field for i in verdict.invalid_fields if i.field in given]
    wrong = []
    for field_id, got in (verdict.fields or {}).items():
        if got is not None and _collapse(got) != _collapse(answers.get(field_id)):
            wrong.append(field_id)
    unsure = [u["field"] if isinstance(u, dict) else getattr(u, "field", str(u))
              for u in verdict.to_json().get("unsure_fields", [])]
    return Cell(verdict.status.value, false_missing, false_invalid, wrong, unsure, verdict.missing_fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--formats", default="docx,label,pdf", help="comma-separated: docx, label (typed after "
                                                                    "the label), pdf")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per cell")
    args = parser.parse_args()
    formats = [f for f in args.formats.split(",") if f]

    totals: Counter[str] = Counter()
    print(f"{'variant':<8} {'format':<6} {'complete':>8} {'review':>6} {'incompl':>7} {'unrecog':>7} "
          f"{'falseMiss':>9} {'falseInv':>8} {'wrongVal':>8} {'emptyOK':>7}")
    # emptyOK: with the URN left empty, the URN is listed as missing and nothing answered is
    for fmt in formats:
        for name, edits in VARIANTS:
            row: Counter[str] = Counter()
            for pid in FORM_FILES:
                variant = build_variant(pid, edits, name)
                answers = variant_answers(variant)
                cell = judge(variant, fmt, answers)
                row["forms"] += 1
                row[cell.status] += 1
                row["false_missing"] += len(cell.false_missing)
                row["false_invalid"] += len(cell.false_invalid)
                row["wrong_values"] += len(cell.wrong_values)
                if cell.status in ("no_form", "not_application"):
                    row["unrecognised"] += 1
                empty = judge(variant, fmt, {k: v for k, v in answers.items() if k != "school.urn"})
                # The empty URN must be listed (and nothing else that was answered).
                missing_ok = empty.status == "incomplete" and not empty.false_missing and \
                    "school.urn" in empty.missing
                row["empty_ok"] += int(missing_ok)
                if args.verbose:
                    print(f"   {pid:<32} {name:<7} {fmt:<6} {cell.status:<15} missing={cell.false_missing} "
                          f"invalid={cell.false_invalid} wrong={cell.wrong_values} unsure={cell.unsure} "
                          f"| URN left empty: {empty.status} missing={empty.missing}")
            totals.update(row)
            print(f"{name:<8} {fmt:<6} {row['complete']:>8} {row['review']:>6} {row['incomplete']:>7} "
                  f"{row['unrecognised']:>7} {row['false_missing']:>9} {row['false_invalid']:>8} "
                  f"{row['wrong_values']:>8} {row['empty_ok']:>4}/{row['forms']}")
    print(f"{'TOTAL':<15} {totals['complete']:>8} {totals['review']:>6} {totals['incomplete']:>7} "
          f"{totals['unrecognised']:>7} {totals['false_missing']:>9} {totals['false_invalid']:>8} "
          f"{totals['wrong_values']:>8} {totals['empty_ok']:>4}/{totals['forms']}")


if __name__ == "__main__":
    main()
