"""How the paper's experiments write their reports: the section body (`Report`: setup,
measurements, findings against the paper or the theory, notes), the numbers in it and in
results.json, Markdown tables. One place, so every section of docs/RESULTS.md reads the same
("—" for a missing number, thousands commas for steps, strict JSON without NaN, each finding
led by its verdict); the header around the body is `repro._common.section`'s.

An experiment supplies its data and its own sentences:

    report = Report(setup="TD3 without BC ... on 2,000 transitions, 300 steps.")
    report.table(["dataset", "seed", "max SEEM"], rows)
    report.finding("SEEM crossed 0.1 before Q passed the ceiling in 4 of 4 seed-runs.",
                   HOLDS)
    report.note("At 300 steps the onset times are not comparable with the paper's.")
    return Outcome(results, report.markdown())
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def fmt(x, digits: int = 3) -> str:
    """A number for a table: '—' for None/NaN, '∞', whole numbers with thousands commas
    from 1 000 to 10⁶ (steps), scientific above, else `digits` significant figures."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if 1000 <= abs(x) < 1e6 or (isinstance(x, int) and abs(x) < 1e6):
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def fmt_signed(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:+.{digits}f}"


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub Markdown table (cells already formatted as strings)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def json_num(x) -> float | None:
    """A number for results.json: None for None/NaN/±inf (strict JSON has neither)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def median_or_none(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.median(vals)) if vals else None


def fmt_as(x, spec: str) -> str:
    """x formatted by the format spec `spec` ('.2f', ',.0f', ...), '—' for None/NaN/±∞."""
    if x is None or not math.isfinite(x):
        return "—"
    return format(x, spec)


# How a finding stands against the paper or the theory: the word that leads its bullet.
HOLDS = "Holds"
"""The measured number agrees with the paper's (or the theory's) within the stated margin."""
DIFFERS = "Differs"
"""It does not, and the run was long and large enough to tell."""
NOT_AT_THIS_SCALE = "Not at this scale"
"""The claim could not be tested here: the runs were too short or too small to show it."""
NOT_SETTLED = "Not settled"
"""The numbers are in but do not decide it (an interval holds 0, runs still pending)."""


@dataclasses.dataclass
class Report:
    """An experiment's section body, in the order every section reads:

    1. `setup`: one paragraph, what ran (algorithm, data, length, seeds, what each number
       means);
    2. the measurements, in the order added: tables (`table`, with an optional lead-in
       sentence), paragraphs (`text`), sub-headings (`heading`);
    3. the findings: a bold "**Against <against>.**", the claim tested (`claim`, if the
       experiment states one), then one bullet per `finding`, led by its verdict (HOLDS,
       DIFFERS, NOT_AT_THIS_SCALE, NOT_SETTLED) when it compares a number with the paper or
       the theory;
    4. the notes: caveats and collapsed per-seed tables (`note`, `details`).
    """

    setup: str
    against: str = "the paper"
    """What the findings are held against: "the paper", "the theory and the paper", ..."""
    claim: str | None = None
    """The claim under test, said once before the findings (else each finding says it)."""
    body: list[str] = dataclasses.field(default_factory=list)
    findings: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def text(self, paragraph: str) -> None:
        """A paragraph of the measurements."""
        self.body.append(paragraph)

    def heading(self, title: str) -> None:
        """A sub-heading among the measurements (a section with several tables)."""
        self.body.append(f"### {title}")

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[Any]],
              caption: str | None = None) -> None:
        """A table of the measurements (cells already formatted), after `caption` if given."""
        if caption is not None:
            self.body.append(caption)
        self.body.append(md_table(headers, rows))

    def finding(self, text: str, verdict: str | None = None) -> None:
        """One bullet of the findings; `verdict` when it holds a number against a reference."""
        self.findings.append(f"**{verdict}.** {text}" if verdict else text)

    def note(self, text: str) -> None:
        """A caveat or remark after the findings."""
        self.notes.append(text)

    def details(self, summary: str, headers: Sequence[str],
                rows: Iterable[Sequence[Any]]) -> None:
        """A long table after the findings, collapsed under `summary` (per-seed numbers)."""
        self.notes.append(f"<details><summary>{summary}</summary>\n\n"
                          f"{md_table(headers, rows)}\n\n</details>")

    def markdown(self) -> str:
        parts = [self.setup, *self.body, f"**Against {self.against}.**"]
        if self.claim:
            parts.append(self.claim)
        if self.findings:
            parts.append("\n".join(f"- {f}" for f in self.findings))
        return "\n\n".join([*parts, *self.notes])
