"""The zoo's checkpoints (models/*.pt) converted today -- through the module
path: `training.models` module, torch.fx import, BN folded there -- give the
logits of the shipped .bin files they were converted to, bit for bit.

R and B: the whole file's logits. BQ: the shipped files were calibrated on
CIFAR-10 images that tests do not read (files 0000-0025 of each class,
`python -m training export-val --split calib`), so the BQ file is converted
with the demo images as calibration, its weights (int8, patterns, scales,
biases) must equal the shipped file's, and with the shipped activation
quantization put back its logits must be the shipped logits. The stacked
checkpoints (training/stacked.py) go through converters/stacked.py the same way."""
import os

import numpy as np
import pytest

import seprt
from converters.__main__ import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "models")

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
# stacked checkpoints -> BQ with `python -m converters.stacked`: models/README.md
STACKED = [("resnet20-stacked-d4m32.pt", "resnet20-stacked-d4m32-BQ.bin"),
           ("resnet20-stacked-d4m128.pt", "resnet20-stacked-d4m128-BQ.bin"),
           ("resnet20-stacked-d4m112.pt", "resnet20-stacked-d4m112-BQ.bin"),
           ("resnet20-stacked-d4m32-64-208.pt", "resnet20-stacked-d4m32-64-208-BQ.bin"),
           ("resnet20-stacked-d4m32-64-d2m128.pt", "resnet20-stacked-d4m32-64-d2m128-BQ.bin"),
           ("resnet56-stacked-d4m128.pt", "resnet56-stacked-d4m128-BQ.bin"),
           ("resnet56-stacked-d4m64.pt", "resnet56-stacked-d4m64-BQ.bin"),
           ("sepnet-cifar-stacked-d4m16.pt", "sepnet-cifar-stacked-d4m16-BQ.bin"),
           ("sepnet-cifar-stacked-d4m32.pt", "sepnet-cifar-stacked-d4m32-BQ.bin")]


@pytest.fixture(scope="module")
def calib_dir():
    """The demo images (seprt/data/samples): calibration images the repo ships."""
    return os.path.dirname(seprt.demo_images()[0])


def test_every_zoo_bin_is_listed():
    shipped = sorted(f for f in os.listdir(MODELS) if f.endswith(".bin"))
    assert sorted([b for _, b, _ in ZOO] + [b for _, b in STACKED]) == shipped


@pytest.mark.parametrize("ckpt,shipped,variant", ZOO, ids=[b for _, b, _ in ZOO])
def test_reconverted_zoo_bin_gives_the_shipped_logits(ckpt, shipped, variant, calib_dir, tmp_path, capsys):
    argv = ["seprt", os.path.join(MODELS, ckpt), "-o", str(tmp_path / shipped), "--variant", variant]
    if variant == "BQ":
        argv += ["--calib", calib_dir]
    assert main(argv) == 0, capsys.readouterr().err
    assert_same_as_shipped(shipped, variant, tmp_path)


@pytest.mark.parametrize("ckpt,shipped", STACKED, ids=[b for _, b in STACKED])
def test_reconverted_stacked_bin_gives_the_shipped_logits(ckpt, shipped, calib_dir, tmp_path):
    from converters import stacked
    assert stacked.main([os.path.join(MODELS, ckpt), "-o", str(tmp_path / shipped), "--variant", "BQ",
                         "--calib", calib_dir]) == 0
    assert_same_as_shipped(shipped, "BQ", tmp_path)


def assert_same_as_shipped(shipped, variant, tmp_path):
    """models/SHIPPED and tmp_path/SHIPPED: R, B the same logits; BQ the same
    weights, and the same logits with the shipped activation quantization."""
    from seprt.engine import FastEngine
    from seprt.graph import Graph
    old = seprt.Model(os.path.join(MODELS, shipped))
    new = seprt.Model(str(tmp_path / shipped))
    x = np.stack([old.preprocess(p)[0] for p in seprt.demo_images()])
    x = np.concatenate([x, np.random.default_rng(0).standard_normal((4,) + x.shape[1:]).astype(np.float32)])
    assert new.meta["arch"] == old.meta["arch"] and new.meta["labels"] == old.meta["labels"]
    assert new.meta.get("provenance.binarize") == old.meta.get("provenance.binarize")
    go, gn = old.graph, new.graph
    assert [n.wfmt for n in gn.nodes if n.wfmt] == [n.wfmt for n in go.nodes if n.wfmt]
    if variant != "BQ":
        np.testing.assert_array_equal(new.logits(x), old.logits(x))
        return
    assert [(n.op, n.inputs, n.output, n.attrs) for n in gn.nodes] == \
        [(n.op, n.inputs, n.output, n.attrs) for n in go.nodes]          # names follow the module now
    for a, b in zip(gn.nodes, go.nodes):
        for ta, tb in zip(a.tensors, b.tensors):
            np.testing.assert_array_equal(ta, tb, err_msg=f"{shipped}: {a.name}")
    assert [v.shape for v in gn.values] == [v.shape for v in go.values]
    shipped_quant = Graph(go.values, gn.nodes, gn.input, gn.output, gn.embed, gn.meta)
    np.testing.assert_array_equal(FastEngine(shipped_quant).run(x)[0], old.logits(x))
