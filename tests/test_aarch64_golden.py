"""Logits equal x86's, on any CPU: golden logits made on x86 (AVX-512 VNNI)
by tools/aarch64/make_golden.py, compared here on whatever runs the tests
(`make test` on x86, `make test-aarch64` under an emulated Cortex-A72 / A76).

Integer models (every conv/fc on the integer path: demo, *-BQ4) MUST be
bit-identical (docs/format.md, "Exactness"); float models within the
spec's tolerance, max|dlogit| / max|logit| <= 1e-4.
"""
import os

import numpy as np
import pytest

import seprt

HERE = os.path.join(os.path.dirname(__file__), "data", "golden")
GOLD = np.load(os.path.join(HERE, "logits.npz"))
MODELS = {"demo": seprt.demo_model_path(), **{n: os.path.join(HERE, n + ".bin")
                                             for n in ("resnet20-B", "resnet20-BQ4", "sepnet-cifar-BQ4")}}


@pytest.mark.parametrize("name", list(MODELS))
def test_logits_equal_x86(name):
    m = seprt.Model(MODELS[name])
    got, want = m.logits(GOLD["x"]), GOLD[name]
    if m.meta["variant"] == "BQ":                        # every conv/fc on integers
        np.testing.assert_array_equal(got, want, err_msg=f"{name}: integer model not bit-identical to x86 "
                                                         f"({m.info()['kernels']})")
    else:
        assert np.abs(got - want).max() / np.abs(want).max() <= 1e-4, name


def test_demo_images_preprocess_as_on_x86():
    """JPEG decoding and resizing (Pillow's aarch64 wheel) give x86's tensors exactly."""
    m = seprt.Model(MODELS["demo"])
    got = np.concatenate([m.preprocess(p) for p in seprt.demo_images()])
    np.testing.assert_array_equal(got, GOLD["images"])
    np.testing.assert_array_equal(m.logits(got), GOLD["demo"][:len(got)])
