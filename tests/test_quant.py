"""Activation calibration (seprt.quant.ActRange): min/max at 8 bits, the
least-squared-error clipped range below, the same sample for the same batches."""
import numpy as np

from seprt.quant import CLIP_FRACTIONS, ActRange, act_qparams, act_qparams_mse, quantize_act

rng = np.random.default_rng(0)


def _mse(x, scale, zero, bits):
    q = quantize_act(x, scale, zero, bits)
    return float(np.mean(((q - zero) * np.float32(scale) - x).astype(np.float64) ** 2))


def _batches(n=6):
    # post-ReLU-like values with a long tail: the max is far above where most values are
    shape = (8, 10, 10, 12)
    return [np.maximum(rng.standard_normal(shape) * rng.exponential(1.0, shape), 0).astype(np.float32)
            for _ in range(n)]


def test_eight_bits_is_min_max():
    r = ActRange(8)
    bs = _batches()
    for b in bs:
        r.add(b)
    allx = np.concatenate([b.reshape(-1) for b in bs])
    assert r.qparams() == act_qparams(allx.min(), allx.max(), 8) and r.samples == []


def test_low_bits_clip_where_the_error_is_least():
    bs = _batches()
    r = ActRange(4)
    for b in bs:
        r.add(b)
    s, z = r.qparams()
    sample = np.concatenate(r.samples)
    assert len(sample) == len(bs) * ActRange.SAMPLE
    # the choice is the exhaustive minimum over CLIP_FRACTIONS on the sample
    errs = [_mse(sample, *act_qparams(r.lo * f, r.hi * f, 4), 4) for f in CLIP_FRACTIONS]
    best = CLIP_FRACTIONS[int(np.argmin(errs))]
    assert (s, z) == act_qparams(r.lo * best, r.hi * best, 4) and best < 1
    # clipped well below the max here, and better than min/max on all the values
    allx = np.concatenate([b.reshape(-1) for b in bs])
    mm = act_qparams(allx.min(), allx.max(), 4)
    assert s < 0.8 * mm[0] and _mse(allx, s, z, 4) < 0.7 * _mse(allx, *mm, 4)
    # the same batches give the same range (the converter and training.actquant agree)
    r2 = ActRange(4)
    for b in bs:
        r2.add(b.copy())
    assert r2.qparams() == (s, z)


def test_widest_range_on_a_tie_and_degenerate_inputs():
    x = np.zeros(100, np.float32)          # all zero: every range quantizes it exactly
    assert act_qparams_mse(x, 0.0, 0.0, 4) == act_qparams(0.0, 0.0, 4)
    x = np.array([0, 1, 2, 3], np.float32)
    assert act_qparams_mse(x, 0.0, 3.0, 2) == act_qparams(0.0, 3.0, 2)   # min/max already exact
    r = ActRange(4)
    r.add(np.array([1.0, np.nan], np.float32))
    r.add(np.array([2.0], np.float32))
    assert not r.finite()
