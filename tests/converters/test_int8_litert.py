"""int8 TFLite models that LiteRT must load (issue 13): timm's lcnet_050 with random
weights made LiteRT abort the process in allocate_tensors. The pattern in small
(torch_blocks.TinyActivationsHead): a batch norm that is not folded (an affine with an
all-zero bias) on activations ~1e-5. Its MUL + ADD quantized to an ADD whose bias
constant has scale 1.0, breaking int8 ADD's 2*max(input scales) < 2^20*output scale,
which LiteRT checks with an abort. LiteRT runs in a child process here
(tflite.run_tflite_isolated), so a regression fails a test instead of killing pytest."""
import os

import numpy as np
import pytest
import torch

import seprt
from converters import tflite
from converters.__main__ import main
from converters.torch_import import from_torch
from seprt import format as fmt

import torch_blocks as tb

BLOCKS_PY = os.path.join(os.path.dirname(__file__), "torch_blocks.py")
tfl = tflite.tfl
OP_NAMES = {v: k for k, v in vars(tfl.BuiltinOperator).items() if not k.startswith("_")}
INT8_REL_TOL = 0.15            # int8 vs float, as test_tflite.test_int8_tiny_graph_runs


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def op_names(model: bytes) -> list[str]:
    m = tfl.ModelT.InitFromPackedBuf(model, 0)
    return [OP_NAMES[m.operatorCodes[o.opcodeIndex].builtinCode] for o in m.subgraphs[0].operators]


def mul_add_affine(b, g, n, xs, y, act):
    """The affine lowering before the fix: MUL by weight, ADD bias."""
    t = b.tensor(f"{n.name}.scaled", b.tensors[y].shape)
    tflite._mul(b, xs[0], b.const(f"{n.name}.weight", n.weight), t)
    b.op(tfl.BuiltinOperator.ADD, [t, b.const(f"{n.name}.bias", n.bias)], [y], tfl.BuiltinOptions.AddOptions,
         tflite._options(tfl.AddOptionsT, fusedActivationFunction=act))


@pytest.fixture
def head():
    """(import, inputs (24, 16, 16, 3), seprt R logits) of the tiny-activations head."""
    imp = from_torch(tb.tiny_activations_head(), 16)
    x = np.random.default_rng(0).standard_normal((24, 16, 16, 3)).astype(np.float32)
    ref = seprt.Model.from_bytes(fmt.to_bytes(imp.graph("R"))).logits(x)
    assert rel(ref, imp.logits(x)) <= 1e-4
    assert np.abs(ref).max() < 1e-5                  # the activations really are tiny
    return imp, x, ref


def test_tiny_activations_head_int8_loads_and_matches(head):
    imp, x, ref = head
    assert [n.op for n in imp.nodes] == ["conv", "act", "affine", "act", "gap", "fc", "act", "fc"]
    int8 = tflite.quantize_int8(tflite.graph_to_tflite(imp.graph("R")), x[:16])
    names = op_names(int8)
    assert "ADD" not in names and names.count("HARD_SWISH") == 3
    assert names.count("DEPTHWISE_CONV_2D") == 1                       # the affine
    y = tflite.run_tflite_isolated(int8, x[16:], what="the int8 model")
    assert rel(y, ref[16:]) <= INT8_REL_TOL                             # measured 0.024


def test_affine_of_a_vector_and_with_relu():
    # a BN on a pooled (N, C, 1, 1) tensor: the affine of a (C,) vector, reshaped around the 1x1 depthwise
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.BatchNorm2d(8),
                              torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8, 4)).eval()
    tb._randomize_bn(net)
    imp = from_torch(net, 12)
    assert [n.op for n in imp.nodes][2:4] == ["affine", "relu"]
    x = np.random.default_rng(1).standard_normal((8, 12, 12, 3)).astype(np.float32)
    fp32 = tflite.graph_to_tflite(imp.graph("R"))
    assert "RELU" not in op_names(fp32)                                  # fused into the depthwise conv
    assert rel(tflite.run_tflite(fp32, x), imp.logits(x)) <= 1e-4
    assert rel(tflite.run_tflite_isolated(tflite.quantize_int8(fp32, x), x), imp.logits(x)) <= INT8_REL_TOL


def test_int8_add_rule_is_checked_before_loading(head, monkeypatch):
    imp, x, _ = head
    monkeypatch.setitem(tflite.EMIT, "affine", mul_add_affine)
    fp32 = tflite.graph_to_tflite(imp.graph("R"))
    with pytest.raises(ValueError, match=r"int8 ADD 'bn': input scales .* 1 and output scale .* break LiteRT's rule"):
        tflite.quantize_int8(fp32, x[:16])


def test_isolated_run_reports_a_litert_abort(head, monkeypatch):
    imp, x, _ = head
    monkeypatch.setitem(tflite.EMIT, "affine", mul_add_affine)
    monkeypatch.setattr(tflite, "_check_int8_add", lambda model: None)
    int8 = tflite.quantize_int8(tflite.graph_to_tflite(imp.graph("R")), x[:16])
    with pytest.raises(ValueError, match="LiteRT killed the process [(]SIGABRT[)] loading or running the int8"):
        tflite.run_tflite_isolated(int8, x[:2], what="the int8 model")


def cli_int8(capsys, calib, out):
    code = main(["tflite", "--model", f"{BLOCKS_PY}:tiny_activations_head", "--input-size", "16", "16",
                 "--quant", "int8", "--calib", str(calib), "-o", str(out)])
    return code, capsys.readouterr().err


def test_cli_int8_writes_a_model_that_loads(tmp_path, capsys, calib):
    out = tmp_path / "head.tflite"
    code, err = cli_int8(capsys, calib, out)
    assert code == 0, err
    assert tflite.run_tflite_isolated(out.read_bytes(), np.zeros((1, 16, 16, 3), np.float32)).shape == (1, 5)


@pytest.mark.parametrize("guard", ["add_rule", "child_process"])
def test_cli_int8_fails_in_one_line_and_writes_nothing(guard, tmp_path, capsys, calib, monkeypatch):
    monkeypatch.setitem(tflite.EMIT, "affine", mul_add_affine)
    if guard == "child_process":                     # a rule we do not know of: LiteRT's abort kills the child only
        monkeypatch.setattr(tflite, "_check_int8_add", lambda model: None)
    out = tmp_path / "head.tflite"
    code, err = cli_int8(capsys, calib, out)
    assert code == 1 and err.count("\n") == 1 and err.startswith("converters: error: "), err
    assert ("int8 ADD 'bn'" if guard == "add_rule" else "SIGABRT") in err and err.rstrip().endswith("nothing written")
    assert not out.exists() and os.listdir(tmp_path) == []
