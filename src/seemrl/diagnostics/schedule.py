"""When to measure SEEM: densely at the start of training, sparser later.

Most divergences begin early: TD3 without its BC term on a small dataset passes the Q
ceiling after a few hundred to a few thousand updates, so a measurement every 10 000 steps
(the authors') sees only the aftermath. Late ones exist too (the paper's antmaze seed at
260k), where a measurement every few thousand steps is plenty. The schedule is:

    spacing(t) = min(every, first · 2^k),  k = max(0, ⌊log2(t / (first · per_octave))⌋)

so measurements `first` steps apart up to step 2 · `first` · `per_octave`, then
`per_octave` measurements per doubling of the step (the spacing doubles as t doubles), until
the spacing reaches `every`. With the defaults (50, 10 000, 20): every 50 steps to step
2 000, every 100 to 4 000, ..., every 10 000 from step 256 000 on; 151 measurements in the
first 100 000 steps, 254 in 1M (the authors' every-10 000 schedule: 10 and 100). The
points are a fixed sequence from step 0, so a resumed run measures at the same steps, and
they do not depend on the logging period.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class SeemSchedule:
    """The steps at which SEEM is measured (see module doc)."""

    first: int = 50
    """Spacing at the start of training (0: a fixed spacing of `every`, the old schedule)."""
    every: int = 10_000
    """Largest spacing (0: never measure)."""
    per_octave: int = 20
    """Measurements per doubling of the step once the spacing grows."""

    def __post_init__(self):
        if self.first < 0 or self.every < 0 or self.per_octave < 1:
            raise ValueError("SeemSchedule needs first >= 0, every >= 0 and per_octave >= 1, "
                             f"got {self}")

    @property
    def enabled(self) -> bool:
        return self.every > 0

    def spacing(self, step: int) -> int:
        """Steps from a measurement at `step` to the next one."""
        if not self.first or self.first >= self.every:
            return self.every
        k = max(0, math.floor(math.log2(max(step, 1) / (self.first * self.per_octave))))
        return min(self.every, self.first * 2 ** k)

    def next_after(self, step: int) -> int | None:
        """The first measurement step strictly after `step` (None when disabled)."""
        if not self.enabled:
            return None
        if not self.first or self.first >= self.every:  # fixed spacing: the multiples
            return (step // self.every + 1) * self.every
        t = 0
        while t <= step:
            t += self.spacing(t)
        return t

    def steps(self, until: int) -> list[int]:
        """Every measurement step in (0, until]."""
        out: list[int] = []
        t = self.next_after(0)
        while t is not None and t <= until:
            out.append(t)
            t = self.next_after(t)
        return out
