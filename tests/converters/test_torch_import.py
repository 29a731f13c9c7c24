"""Any PyTorch CNN -> seprt R / B / BQ and TFLite fp32 / int8 via torch.fx,
with the converters' parity checks, on the classic blocks (tests/converters/torch_blocks.py)."""
import os

import numpy as np
import pytest
import torch

import seprt
from converters import tflite
from converters.__main__ import main
from converters.torch_import import ImportError_, from_torch
from seprt import format as fmt

import torch_blocks as tb

HERE = os.path.dirname(__file__)
BLOCKS_PY = os.path.join(HERE, "torch_blocks.py")
rng = np.random.default_rng(0)


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def images(n=6, size=32):
    return rng.standard_normal((n, size, size, 3)).astype(np.float32)


@pytest.mark.parametrize("name", sorted(tb.BLOCKS))
def test_block_converts_with_parity(name):
    """R and B <= 1e-4 relative to PyTorch (B: PyTorch with the binarized weights),
    BQ against its simulated quantization, TFLite fp32 <= 1e-4, int8 loads and runs."""
    imp = from_torch(tb.block(name), 32)
    x = images()
    want = imp.logits(x)
    for variant in ("R", "B", "BQ"):
        g = imp.graph(variant, "all", calib=x)
        m = seprt.Model.from_bytes(fmt.to_bytes(g))
        got = m.logits(x)
        target = want if variant == "R" else imp.simulate(g, x)
        assert rel(got, target) <= (1e-4 if variant != "BQ" else 1e-2), (name, variant)
        assert m.embed(np.zeros((32, 32, 3), np.uint8)).ndim == 1
        if variant == "BQ":     # every conv and fc runs on integers (its input value is quantized)
            assert all(g.is_integer(n) for n in g.nodes if n.op in ("conv", "fc")), name
    fp32 = tflite.graph_to_tflite(imp.graph("R"))
    assert rel(tflite.run_tflite(fp32, x), want) <= 1e-4
    int8 = tflite.run_tflite(tflite.quantize_int8(fp32, x), x)
    assert int8.shape == want.shape and np.isfinite(int8).all()


def test_lowering_is_what_the_blocks_say():
    ops = lambda name: [n.op for n in from_torch(tb.block(name), 32).nodes]
    assert "shuffle" in ops("shuffle") and "mul" in ops("se") and "affine" in ops("dense")
    assert ops("conv_classifier")[-2:] == ["gap", "gap"]             # logits pool, embed.gap
    imp = from_torch(tb.block("conv_classifier"), 32)
    assert imp.embed == "embed.gap" and imp.shapes[imp.embed] == (16,)
    dense = from_torch(tb.block("dense"), 32)
    pool = [n for n in dense.nodes if n.op == "avgpool"][0]
    assert pool.attrs == {"kernel": 3, "stride": 2, "pad": 1, "ceil_mode": 1, "count_include_pad": 1}
    # BN after a conv is folded: no affine in the residual block
    assert "affine" not in ops("residual")
    assert ops("shortcut_a").count("shortcut_a") == 1 and "slice" not in ops("shortcut_a")
    assert "affine" not in ops("timm_bn_act_assert")                 # x.ndim is no second reader of the conv
    ghost = from_torch(tb.block("timm_bn_act_ghost"), 32).nodes
    assert [n.op for n in ghost].count("affine") == 1 and ghost[-3].op == "slice"   # bn1 folded, bn2 affine
    kinds = {n.attrs["kind"] for n in from_torch(tb.block("activations"), 32).nodes if n.op == "act"}
    assert kinds == {1, 2, 3, 4, 5, 6}


def test_binarize_by_kernel_size_and_counts():
    imp = from_torch(tb.block("inception"), 32)
    by = {m: imp.binarized(m) for m in ("3x3", "5x5", "3x3,5x5", "all", "inner", "none")}
    assert by["3x3"] == {"stem.0", "block.b2.2"} and by["5x5"] == {"block.b3.2"}
    assert by["3x3,5x5"] == by["all"] and by["inner"] == by["all"] - {"stem.0"} and not by["none"]
    p = imp.params("5x5")
    assert p["pattern"] == 4 * 2 * 25 and p["full"] == p["pattern"] + p["real"]
    with pytest.raises(ImportError_, match="kernel sizes"):
        imp.binarized("3x5")


def test_linear_over_flattened_map_is_permuted():
    imp = from_torch(tb.block("vgg_flatten"), 32)
    x = images(4)
    assert rel(seprt.Model.from_bytes(fmt.to_bytes(imp.graph("R"))).logits(x), imp.logits(x)) <= 1e-5


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("fn", ["tiny_resnet", "tiny_mobilenet", "tiny_googlenet"])
def test_cli_whole_small_nets(fn, tmp_path, capsys, calib):
    spec = f"{BLOCKS_PY}:{fn}"
    before = os.path.getmtime(BLOCKS_PY)
    for variant in ("R", "B", "BQ"):
        out = tmp_path / f"{variant}.bin"
        code, log, err = run(capsys, "seprt", "--model", spec, "--input-size", 32, 32, "-o", out, "--variant", variant,
                             "--calib", calib, "--mean", 0.5, 0.5, 0.5, "--std", 0.25, 0.25, 0.25)
        assert code == 0, err
        m = seprt.Model(str(out))
        assert m.info()["variant"] == variant and m.graph.meta["preprocess.mean"] == [0.5, 0.5, 0.5]
        assert "check:" in log
    for quant in ("fp32", "int8"):
        code, log, err = run(capsys, "tflite", "--model", spec, "--input-size", 32, 32, "-o", tmp_path / f"{quant}.tflite",
                             "--quant", quant, "--calib", calib)
        assert code == 0, err
    assert os.path.getmtime(BLOCKS_PY) == before


def test_cli_weights_labels_and_module_spec(tmp_path, capsys):
    torch.manual_seed(5)
    other = tb._randomize_bn(tb.Stem(torch.nn.Sequential(tb.Residual(8, 8, 1), tb.Residual(8, 16, 2)), out=16))
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(1.5)
    sd = tmp_path / "sd.pt"
    torch.save({"state_dict": other.state_dict()}, sd)
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"thing{i}\n" for i in range(10)))
    out = tmp_path / "r.bin"
    code, log, err = run(capsys, "seprt", "--model", f"{BLOCKS_PY}:tiny_resnet", "--weights", sd, "--input-size", 32, 32,
                         "-o", out, "--variant", "R", "--labels", labels, "--resize", "center_crop",
                         "--channel-order", "BGR")
    assert code == 0, err
    m = seprt.Model(str(out))
    assert m.labels == [f"thing{i}" for i in range(10)] and m.graph.meta["preprocess.channel_order"] == "BGR"
    x = images(3)
    want = from_torch(other, 32).logits(x)
    assert rel(m.logits(x), want) <= 1e-4                       # the state dict's weights, not the callable's
    code, log, err = run(capsys, "seprt", "--model", "converters.zoo_nets:squeezenet1_1", "--input-size", 64, 64,
                         "-o", tmp_path / "sq.bin", "--variant", "B", "--binarize", "3x3")
    assert code == 0, err
    assert seprt.Model(str(tmp_path / "sq.bin")).info()["variant"] == "B"


@pytest.mark.parametrize("argv,message", [
    (["--model", f"{BLOCKS_PY}:untraceable"], "does not trace"),
    (["--model", f"{BLOCKS_PY}:unsupported_op"], "node 'gelu' (function torch.nn.functional.gelu at torch_blocks.py"),
    (["--model", f"{BLOCKS_PY}:two_outputs"], "the model has 2 outputs"),
    (["--model", f"{BLOCKS_PY}:non_square"], "non-square kernel (3, 1)"),
    (["--model", f"{BLOCKS_PY}:asymmetric_padding"], "non-square padding (1, 0)"),
    (["--model", f"{BLOCKS_PY}:not_a_module"], "returned a int, not a torch.nn.Module"),
    (["--model", f"{BLOCKS_PY}:nothing"], "has no callable 'nothing'"),
    (["--model", "no_such_package.x:y"], "cannot import no_such_package.x"),
    (["--model", f"{BLOCKS_PY}:tiny_resnet", "--weights", "WRONG_SD"], "does not match the model: keys"),
    (["--model", f"{BLOCKS_PY}:tiny_resnet", "--labels", "TWO_LABELS"], "2 labels for a classifier with 10 outputs"),
    (["--model", f"{BLOCKS_PY}:tiny_resnet", "--binarize", "3x2"], "--binarize '3x2'"),
    (["--model", f"{BLOCKS_PY}:tiny_resnet", "CKPT"], "not both"),
])
def test_cli_bad_models_fail_in_one_line(argv, message, tmp_path, capsys):
    sd = tmp_path / "wrong.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, sd)
    two = tmp_path / "two.txt"
    two.write_text("a\nb\n")
    ck = tmp_path / "x.pt"
    ck.write_bytes(b"")
    argv = [{"WRONG_SD": sd, "TWO_LABELS": two, "CKPT": ck}.get(a, a) for a in argv]
    out = tmp_path / "out.bin"
    variant = ["--variant", "B"] if "--binarize" in argv else ["--variant", "R"]
    code, log, err = run(capsys, "seprt", *argv, "--input-size", 32, 32, "-o", out, *variant)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("converters: error: ") and "Traceback" not in err
    assert message in err, err
    assert not out.exists() and sd.read_bytes()[:2] == open(sd, "rb").read()[:2]
