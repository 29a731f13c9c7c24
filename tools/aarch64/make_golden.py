"""Golden logits for tests/test_aarch64_golden.py, made on x86 (run from the repo root):

    .venv/bin/python tools/aarch64/make_golden.py

1) writes three small random-weight models to tests/data/golden/ (their bytes
   are the fixture: a model rebuilt on another CPU could calibrate differently)
2) preprocesses the packaged demo images (the tensors logits() takes)
3) runs every model (and the packaged demo model) on those tensors plus two
   random inputs, and saves inputs and logits to tests/data/golden/logits.npz
"""
from __future__ import annotations

import os
import platform

import numpy as np

import seprt
from seprt import arch, format as fmt, variants
from seprt.kernels.intrinsics import dot_isa

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "golden")

# name: (arch, variant, binarize, act_bits) -- float B, BQ with 4-bit activations (u4 paths)
MODELS = {"resnet20-B": ("resnet20", "B", "all", 8),
          "resnet20-BQ4": ("resnet20", "BQ", "all", 4),
          "sepnet-cifar-BQ4": ("sepnet-cifar", "BQ", "prb", 4)}


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    paths = {"demo": seprt.demo_model_path()}
    for name, (a, v, b, bits) in MODELS.items():                      # 1) the model files
        g = variants.random_graph(arch.get(a), v, b, seed=11, act_bits=bits, calib_n=2)
        paths[name] = os.path.join(OUT, name + ".bin")
        n = fmt.save(g, paths[name])
        print(f"{paths[name]}: {n:,} bytes")
    demo = seprt.Model(paths["demo"])                                   # 2) the inputs
    images = np.concatenate([demo.preprocess(p) for p in seprt.demo_images()])
    noise = np.random.default_rng(5).standard_normal((2,) + images.shape[1:]).astype(np.float32)
    x = np.concatenate([images, noise])
    out = {"x": x, "images": images}
    for name, p in paths.items():                                       # 3) the logits
        out[name] = seprt.Model(p).logits(x)
        print(f"{name}: logits {out[name].shape}, max |logit| {np.abs(out[name]).max():.3f}")
    np.savez_compressed(os.path.join(OUT, "logits.npz"), **out,
                        made_on=np.array(f"{platform.machine()} dot_isa={dot_isa()} numpy {np.__version__}"))


if __name__ == "__main__":
    main()
