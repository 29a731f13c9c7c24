"""Shared fixtures: tiny synthetic CIFAR-like datasets (never /work/shared)."""
import io
import os
import sys
import tarfile

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def jpeg_bytes(arr: np.ndarray) -> bytes:
    from PIL import Image
    b = io.BytesIO()
    Image.fromarray(arr).save(b, format="JPEG", quality=90)
    return b.getvalue()


def make_images(n_train=4, n_val=2, seed=0, size=32):
    """{member path: jpeg bytes} in the shared archive's layout; class c has
    a distinct mean colour so a tiny net can learn something."""
    rng = np.random.default_rng(seed)
    out = {}
    for ci, c in enumerate(LABELS):
        nums = list(range(n_train)) + list(range(4500, 4500 + n_val))
        for i in nums:
            a = np.clip(rng.normal(20 + ci * 22, 30, (size, size, 3)), 0, 255).astype(np.uint8)
            out[f"train/{c}/{i:04d}.jpg"] = jpeg_bytes(a)
    return out


def write_tar(path, files: dict) -> str:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return str(path)


@pytest.fixture(scope="session")
def tiny_tar(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    return write_tar(d / "tiny.tar.gz", make_images())
