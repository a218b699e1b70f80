"""Progress bars: a call with two loops shows both bars in one display, each advanced by its own callback."""

from __future__ import annotations

import pytest

from osteomet.utils.progress import progress_bar, progress_bars


def test_two_steps_advance_their_own_bars(capsys: pytest.CaptureFixture[str]) -> None:
    with progress_bars(("slices", 3), ("segment", 2)) as (cached, segmented):
        for _ in range(3):
            cached()
        segmented()
    err = capsys.readouterr().err
    assert "slices" in err and "3/3" in err and "segment" in err and "1/2" in err


def test_a_single_bar_is_the_one_step_case(capsys: pytest.CaptureFixture[str]) -> None:
    with progress_bar("import", 4) as advance:
        advance()
        advance()
    assert "2/4" in capsys.readouterr().err
