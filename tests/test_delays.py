"""The delay-aware learning rate: PipeMare's per-stage scales by frame gap."""

import numpy as np
import pytest

from keras_sideways import delays


def test_scales_start_at_one_over_one_plus_the_gap_and_reach_one():
    gaps = [6, 4, 2, 0]
    first = [float(s) for s in delays.stage_scales(gaps, 0, warmup_steps=10)]
    np.testing.assert_allclose(first, [1 / 7, 1 / 5, 1 / 3, 1.0], rtol=1e-6)
    half = [float(s) for s in delays.stage_scales(gaps, 5, warmup_steps=10)]
    np.testing.assert_allclose(half, [7**-0.5, 5**-0.5, 3**-0.5, 1.0], rtol=1e-6)
    for step in (10, 11, 1000):
        after = [float(s) for s in delays.stage_scales(gaps, step, warmup_steps=10)]
        np.testing.assert_allclose(after, [1.0] * 4)


@pytest.mark.parametrize("steps", [-1, 2.5, "10", True, None])
def test_bad_warmup_steps_are_refused(steps):
    with pytest.raises(ValueError, match=r"delay_warmup_steps must be a whole number >= 0.*got"):
        delays.check_warmup_steps(steps)
