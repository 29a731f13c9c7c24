import os
import tarfile
import warnings

import numpy as np
import pytest
import torch

from training import data
from conftest import LABELS, make_images, write_tar


def test_tar_load_split_cache_and_corrupt_jpeg(tmp_path):
    files = make_images(n_train=3, n_val=1)
    files["train/cat/0002.jpg"] = b"\xff\xd8\xff\xe0 this is not really a jpeg"
    src = write_tar(tmp_path / "t.tar.gz", files)
    cache = str(tmp_path / "cache")
    with pytest.warns(UserWarning, match="0002.jpg"):
        ds = data.load(src, labels=LABELS, cache_dir=cache, progress=False)
    assert ds.skipped == 1 and ds.skipped_files == ["train/cat/0002.jpg"]
    assert ds.images.shape == (39, 32, 32, 3) and ds.images.dtype == np.uint8
    assert ds.classes == LABELS
    tr, va = ds.split("train"), ds.split("val")
    assert len(tr) == 29 and len(va) == 10
    assert all(int(os.path.basename(f)[:4]) >= 4500 for f in va.files)
    assert sorted(set(va.labels.tolist())) == list(range(10))
    # second load comes from the cache, identical
    assert len(os.listdir(cache)) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds2 = data.load(src, labels=LABELS, cache_dir=cache, progress=False)
    assert np.array_equal(ds2.images, ds.images) and np.array_equal(ds2.labels, ds.labels)
    assert ds2.skipped == 1
    m, s = data.mean_std(tr.images)
    assert len(m) == 3 and all(0 < v < 1 for v in m + s)


def test_imagefolder_directory(tmp_path):
    root = tmp_path / "folder"
    for name, b in make_images(n_train=2, n_val=1).items():
        cls, fn = name.split("/")[1:]
        (root / cls).mkdir(parents=True, exist_ok=True)
        (root / cls / fn).write_bytes(b)
    ds = data.load(str(root), labels=LABELS, cache_dir=None, progress=False)
    assert len(ds) == 30 and len(ds.split("val")) == 10
    assert ds.labels[ds.files.index("dog/0000.jpg")] == LABELS.index("dog")


def test_export_val_copies_original_bytes(tmp_path):
    files = make_images(n_train=2, n_val=2)
    src = write_tar(tmp_path / "t.tar.gz", files)
    out = tmp_path / "val"
    assert data.export_val(src, str(out)) == 20
    assert (out / "bird" / "4501.jpg").read_bytes() == files["train/bird/4501.jpg"]
    assert not (out / "bird" / "0000.jpg").exists()
    tout = str(tmp_path / "val.tar")
    assert data.export_val(src, tout) == 20
    with tarfile.open(tout) as tf:
        assert tf.extractfile("ship/4500.jpg").read() == files["train/ship/4500.jpg"]
    calib = tmp_path / "calib"
    assert data.export_val(src, str(calib), split="calib") == 20      # files 0000, 0001 of each class
    assert (calib / "bird" / "0001.jpg").read_bytes() == files["train/bird/0001.jpg"]
    assert not (calib / "bird" / "4501.jpg").exists()


def test_augment_is_crop_and_flip():
    x = torch.randint(0, 255, (64, 3, 8, 8), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    y = data.augment(x, g, pad=2)
    assert y.shape == x.shape and y.dtype == torch.uint8
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(64):                     # every output is some crop, maybe flipped
        ok = False
        for dy in range(5):
            for dx in range(5):
                c = xp[i, :, dy:dy + 8, dx:dx + 8]
                ok |= torch.equal(y[i], c) or torch.equal(y[i], c.flip(-1))
        assert ok
    nflip = sum(not torch.equal(y[i], xp[i, :, 2:10, 2:10]) for i in range(64))
    assert nflip > 20                       # not the identity


def test_batches_normalize_and_cover():
    ds = data.Dataset(np.full((10, 4, 4, 3), 128, np.uint8), np.arange(10), [f"c/{i}.jpg" for i in range(10)],
                      ["c"], "mem")
    b = data.Batches(ds, [0.5] * 3, [0.25] * 3, 4, train=False)
    xs = list(b)
    assert len(xs) == 3 and sum(len(y) for _, y in xs) == 10
    assert torch.allclose(xs[0][0], torch.full((4, 3, 4, 4), (128 / 255 - 0.5) / 0.25))
    tb = data.Batches(ds, [0.5] * 3, [0.25] * 3, 4, train=True, seed=1)
    tb.set_epoch(3)
    a = torch.cat([y for _, y in tb]); tb.set_epoch(3)
    assert torch.equal(a, torch.cat([y for _, y in tb])) and len(a) == 8   # drop_last, deterministic
