"""How the paper's experiments write their reports: numbers for tables and results.json,
Markdown tables. One place, so every section of docs/RESULTS.md reads the same ("—" for a
missing number, thousands commas for steps, strict JSON without NaN); the section around them
is `repro._common.section`'s."""

from __future__ import annotations

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
