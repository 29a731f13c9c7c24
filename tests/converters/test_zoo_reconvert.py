"""The zoo's checkpoints (models/*.pt) converted today -- through the module
path: `training.models` module, torch.fx import, BN folded there -- give the
logits of the shipped .bin files they were converted to, bit for bit.

R and B run always (on the demo images and random inputs). BQ needs the
images the shipped files were calibrated on (files 0000-0025 of each class
of the shared CIFAR-10 archive, `python -m training export-val --split
calib`); it is skipped when the archive is not there."""
import os

import numpy as np
import pytest

import seprt
from converters.__main__ import main
from converters.convert import load_images, preprocess_meta

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "models")
CIFAR = "/work/shared/datasets/cifar10-train.tar.gz"

# (checkpoint, shipped file, variant): models/README.md "Commands"
ZOO = [("resnet20-full.pt", "resnet20-R.bin", "R"),
       ("resnet20-refined-all.pt", "resnet20-B.bin", "B"), ("resnet20-refined-all.pt", "resnet20-BQ.bin", "BQ"),
       ("resnet20-refined-inner.pt", "resnet20-inner-B.bin", "B"),
       ("resnet20-refined-inner.pt", "resnet20-inner-BQ.bin", "BQ"),
       ("resnet20-ste.pt", "resnet20-ste-B.bin", "B"), ("resnet20-ste.pt", "resnet20-ste-BQ.bin", "BQ"),
       ("resnet56-full.pt", "resnet56-R.bin", "R"),
       ("resnet56-refined-all.pt", "resnet56-B.bin", "B"), ("resnet56-refined-all.pt", "resnet56-BQ.bin", "BQ"),
       ("resnet56-ste.pt", "resnet56-ste-B.bin", "B"), ("resnet56-ste.pt", "resnet56-ste-BQ.bin", "BQ"),
       ("sepnet-cifar-full.pt", "sepnet-cifar-R.bin", "R"),
       ("sepnet-cifar-refined-prb.pt", "sepnet-cifar-B.bin", "B"),
       ("sepnet-cifar-refined-prb.pt", "sepnet-cifar-BQ.bin", "BQ")]


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    if not os.path.exists(CIFAR):
        return None
    from training import data
    d = tmp_path_factory.mktemp("calib")
    data.export_val(CIFAR, str(d), split="calib")
    return str(d)


def test_every_zoo_bin_is_listed():
    shipped = sorted(f for f in os.listdir(MODELS) if f.endswith(".bin"))
    assert sorted(b for _, b, _ in ZOO) == shipped


@pytest.mark.parametrize("ckpt,shipped,variant", ZOO, ids=[b for _, b, _ in ZOO])
def test_reconverted_zoo_bin_gives_the_shipped_logits(ckpt, shipped, variant, calib_dir, tmp_path, capsys):
    old = seprt.Model(os.path.join(MODELS, shipped))
    argv = ["seprt", os.path.join(MODELS, ckpt), "-o", str(tmp_path / shipped), "--variant", variant]
    if variant == "BQ":
        if calib_dir is None:
            pytest.skip(f"BQ needs the calibration images of {CIFAR}")
        argv += ["--calib", calib_dir]
    assert main(argv) == 0, capsys.readouterr().err
    new = seprt.Model(str(tmp_path / shipped))
    meta = preprocess_meta({k.split(".", 1)[1]: v for k, v in old.meta.items() if k.startswith("preprocess.")})
    if calib_dir is not None:
        x = load_images(calib_dir, meta, "calib", 64)[0]
    else:
        x = np.stack([old.preprocess(p)[0] for p in seprt.demo_images()])
    x = np.concatenate([x, np.random.default_rng(0).standard_normal((4,) + x.shape[1:]).astype(np.float32)])
    assert new.meta["arch"] == old.meta["arch"] and new.meta["labels"] == old.meta["labels"]
    assert new.meta.get("provenance.binarize") == old.meta.get("provenance.binarize")
    assert [n.wfmt for n in new.graph.nodes if n.wfmt] == [n.wfmt for n in old.graph.nodes if n.wfmt]
    np.testing.assert_array_equal(new.logits(x), old.logits(x))
