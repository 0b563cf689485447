"""Max-pool on VTA (identity GEMM into ACC, ALU MIN -128 over the zero padding, ALU ADD/MAX over register
operands): lint-clean and equal to the window maximum exactly, signed values and padding included."""

from __future__ import annotations

import numpy as np
import pytest

from edgec import UsageError
from edgec.vta.lint import check
from edgec.vta.pool import maxpool
from edgec.vta.simulator import simulate


def window_max(x, kernel, stride, pads):
    t, l, b, r = pads
    xp = np.pad(x.astype(np.int32), ((0, 0), (0, 0), (t, b), (l, r)), constant_values=-128)
    windows = np.lib.stride_tricks.sliding_window_view(xp, kernel, axis=(2, 3))[:, :, ::stride, ::stride]
    return windows.max(axis=(-1, -2)).astype(np.int8)


@pytest.mark.parametrize("c,h,w,kernel,stride,pads,nonneg", [
    (16, 10, 10, (2, 2), 2, (0, 0, 0, 0), False),
    (20, 9, 8, (3, 3), 2, (1, 1, 1, 1), True),
    (20, 9, 8, (3, 3), 2, (1, 1, 1, 1), False),
    (17, 11, 12, (3, 3), 2, (2, 1, 2, 2), False),
    (5, 7, 7, (3, 2), 1, (0, 0, 0, 0), False),
    (33, 5, 6, (2, 2), 1, (0, 0, 1, 1), True),
    (64, 30, 30, (3, 3), 2, (1, 1, 1, 1), False),
])
def test_maxpool_is_exact(c, h, w, kernel, stride, pads, nonneg):
    rng = np.random.default_rng(c * h)
    x = rng.integers(0 if nonneg else -128, 128, (1, c, h, w), dtype=np.int8)
    layer = maxpool(x, kernel, stride, pads)
    check(layer.program)
    simulate(layer.program)
    np.testing.assert_array_equal(layer.output(), window_max(x, kernel, stride, pads))


def test_pool_refuses_pads_over_15():
    with pytest.raises(UsageError, match="pads"):
        maxpool(np.zeros((1, 16, 6, 6), np.int8), (3, 3), 2, (16, 0, 0, 0))
