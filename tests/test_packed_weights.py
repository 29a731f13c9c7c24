"""Binary weights kept as sign bits (benchmarks/packed_weights.py, issue 16 item 4):
the same accumulators as the int8 dot kernel and the numpy reference, bit for bit."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
from packed_weights import conv_u8bit, layer, pack_u8bit  # noqa: E402

from seprt.kernels.conv import conv_int_ref, conv_u8i8  # noqa: E402


@pytest.mark.parametrize("h,w,c,k", [(7, 5, 16, 16), (6, 6, 64, 40), (5, 7, 3, 17), (4, 4, 130, 33), (3, 5, 8, 8)])
def test_bits_match_int8_and_reference(h, w, c, k):
    head, b8, b1, tail, n_out, w_int, A = layer(h, w, c, k, seed=h * w + k)
    conv_u8i8(*head, b8, *tail)
    want = tail[8].copy()
    tail[8][:] = 0
    conv_u8bit(*head, b1, *tail)
    np.testing.assert_array_equal(tail[8], want)
    q = A.reshape(h + 2, w + 2, -1)[1:-1, 1:-1, :c]
    ref = np.maximum(conv_int_ref(q, 3, w_int, 1, 1, 1), 0).astype(np.float32)    # relu, mult 1, bias 0
    np.testing.assert_array_equal(tail[8].reshape(ref.shape), ref)
    assert b1.nbytes * 8 == b8.nbytes


def test_pack_refuses_non_binary_weights():
    with pytest.raises(ValueError, match="±1"):
        pack_u8bit(np.zeros((16, 3, 3, 4), np.int8), 1, 4, 1)
