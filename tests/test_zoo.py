"""The shipped model zoo (models/) is what its docs say: every file loads,
its metadata names the checkpoint it came from, and the bytes and validation
accuracies in benchmarks/accuracy.json (the source of docs/results.md and
models/README.md) are those of the files in the repository."""
import json
import os

import numpy as np
import pytest

import seprt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "models")
with open(os.path.join(ROOT, "benchmarks", "accuracy.json")) as f:
    RESULTS = json.load(f)
BINS = [(a, v) for a in RESULTS["archs"] for v in ("R", "B", "BQ")]


@pytest.mark.parametrize("arch_id,variant", BINS)
def test_zoo_bin_matches_its_record(arch_id, variant):
    path = os.path.join(MODELS, f"{arch_id}-{variant}.bin")
    m = seprt.Model(path)
    rec = RESULTS["archs"][arch_id]
    assert m.meta["arch"] == arch_id and m.meta["variant"] == variant
    assert m.nbytes == os.path.getsize(path) == rec["files"][f"{variant}.bin"]["bytes"]
    stage = "full" if variant == "R" else "refined"
    assert m.meta["provenance.stage"] == stage
    # the converter measured the same validation accuracy when it wrote the file
    assert abs(m.meta["provenance.val_top1"] - rec["files"][f"{variant}.bin"]["val_top1"]) < 1e-6
    z = m.logits(m.preprocess(seprt.demo_images()[0]))
    assert z.shape == (1, 10) and np.all(np.isfinite(z))


def test_demo_model_is_the_zoo_sepnet_bq():
    with open(seprt.demo_model_path(), "rb") as a, open(os.path.join(MODELS, "sepnet-cifar-BQ.bin"), "rb") as b:
        assert a.read() == b.read()


@pytest.mark.parametrize("arch_id", list(RESULTS["archs"]))
def test_zoo_tflite_files_are_the_recorded_ones(arch_id):
    for name in ("fp32.tflite", "int8.tflite", "B-int8.tflite"):
        path = os.path.join(MODELS, f"{arch_id}-{name}")
        assert os.path.getsize(path) == RESULTS["archs"][arch_id]["files"][name]["bytes"]


# the extra ResNet pattern models models/README.md lists (not in accuracy.json):
# (file stem, binarize mode, source checkpoint, pattern convs, convs, B and BQ validation top-1)
EXTRA = [("resnet20-inner", "inner", "resnet20-refined-inner.pt", 18, 19, {"B": 0.7850, "BQ": 0.7832}),  # stem real
         ("resnet20-ste", "all", "resnet20-ste.pt", 19, 19, {"B": 0.8714, "BQ": 0.8716}),  # patterns learned (STE + KD)
         ("resnet56-ste", "all", "resnet56-ste.pt", 55, 55, {"B": 0.8462, "BQ": 0.8454})]


@pytest.mark.parametrize("stem,mode,source,n_bin,n_conv,top1", EXTRA)
@pytest.mark.parametrize("variant", ["B", "BQ"])
def test_zoo_extra_resnet(stem, mode, source, n_bin, n_conv, top1, variant):
    m = seprt.Model(os.path.join(MODELS, f"{stem}-{variant}.bin"))
    assert m.meta["provenance.binarize"] == mode and m.meta["provenance.source"] == source
    assert abs(m.meta["provenance.val_top1"] - top1[variant]) < 5e-5
    kinds = {r["name"]: r["weights"] for r in m.info()["layers"] if r["op"] == "conv"}
    assert sum(k.startswith("bin") for k in kinds.values()) == n_bin and len(kinds) == n_conv
    assert kinds["conv1"].startswith("bin") == (mode == "all")


# the stacked models models/README.md lists (training/stacked.py -> converters/stacked.py):
# (file, source checkpoint, stacked convs, k x k weight bytes, BQ validation top-1)
STACKED = [("resnet20-stacked-d4m32-BQ.bin", "resnet20-stacked-d4m32.pt", 19, 7592, 0.7480),
           ("resnet20-stacked-d4m128-BQ.bin", "resnet20-stacked-d4m128.pt", 19, 16120, 0.8106),
           ("resnet20-stacked-d4m112-BQ.bin", "resnet20-stacked-d4m112.pt", 19, 15160, 0.8104),
           ("resnet20-stacked-d4m32-64-208-BQ.bin", "resnet20-stacked-d4m32-64-208.pt", 19, 16120, 0.8188),
           ("resnet20-stacked-d4m32-64-d2m128-BQ.bin", "resnet20-stacked-d4m32-64-d2m128.pt", 19, 16408, 0.8442),
           ("resnet56-stacked-d4m128-BQ.bin", "resnet56-stacked-d4m128.pt", 55, 49336, 0.8318),
           ("resnet56-stacked-d4m64-BQ.bin", "resnet56-stacked-d4m64.pt", 55, 35016, 0.8160),
           ("sepnet-cifar-stacked-d4m16-BQ.bin", "sepnet-cifar-stacked-d4m16.pt", 21, 3414, 0.8522),
           ("sepnet-cifar-stacked-d4m32-BQ.bin", "sepnet-cifar-stacked-d4m32.pt", 21, 5210, 0.8712)]


@pytest.mark.parametrize("name,source,n_stack,kxk_bytes,top1", STACKED)
def test_zoo_stacked(name, source, n_stack, kxk_bytes, top1):
    from seprt.stacked import kxk_bytes as count
    m = seprt.Model(os.path.join(MODELS, name))
    assert m.meta["provenance.stage"] == "stacked" and m.meta["provenance.source"] == source
    assert abs(m.meta["provenance.val_top1"] - top1) < 5e-5
    kinds = [r["weights"] for r in m.info()["layers"] if r["op"] == "conv" and r["kernel"] > 1]
    assert kinds == ["stack_packed"] * n_stack
    kb = count(m.graph)
    assert kb["bytes"] == kxk_bytes and kb["ratio"] > 32                   # past the patterns' 32x
