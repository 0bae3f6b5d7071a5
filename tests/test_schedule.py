"""The SEEM measurement schedule: dense early, geometric later, capped."""

import pytest

from seemrl.diagnostics.schedule import SeemSchedule


def test_default_spacing():
    s = SeemSchedule(first=50, every=10_000, per_octave=20)
    steps = s.steps(1_000_000)
    gaps = [b - a for a, b in zip([0, *steps], steps, strict=False)]
    assert steps[:3] == [50, 100, 150]
    assert set(gaps[:40]) == {50} and steps[39] == 2000      # every 50 to step 2 000
    assert gaps[40] == 100                                    # then 100 up to 4 000
    assert all(b >= a for a, b in zip(gaps, gaps[1:], strict=False))  # never denser later
    assert max(gaps) == 10_000 and gaps[-1] == 10_000         # capped at `every`
    # per_octave measurements per doubling of the step once the spacing grows
    assert sum(4000 < t <= 8000 for t in steps) == 20


@pytest.mark.parametrize("step", [0, 49, 50, 1999, 2000, 2050, 123_456])
def test_next_after_is_the_sequence(step):
    s = SeemSchedule()
    nxt = s.next_after(step)
    assert nxt > step and nxt in s.steps(nxt)
    assert not [t for t in s.steps(nxt) if step < t < nxt]


def test_fixed_and_disabled():
    assert SeemSchedule(first=0, every=1000).steps(3500) == [1000, 2000, 3000]
    assert SeemSchedule(first=500, every=100).steps(300) == [100, 200, 300]  # first >= every
    assert SeemSchedule(every=0).next_after(10) is None and SeemSchedule(every=0).steps(10) == []
    with pytest.raises(ValueError):
        SeemSchedule(first=-1)
