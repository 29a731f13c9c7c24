"""TFLite baselines (converters/tflite.py): fp32 parity with seprt.reference,
op-by-op on tiny graphs and on whole random models; the int8 model."""
import dataclasses

import numpy as np
import pytest
from PIL import Image


from ai_edge_litert import schema_py_generated as tfl
from ai_edge_litert.interpreter import Interpreter

from converters.tflite import graph_to_tflite, quantize_int8, run_tflite
from seprt import arch, reference, variants
from seprt.arch import Arch, Layer

OP_NAMES = {v: k for k, v in vars(tfl.BuiltinOperator).items() if not k.startswith("_")}


def rel_err(y: np.ndarray, ref: np.ndarray) -> float:
    """max |Δlogit| / max |logit|."""
    return float(np.abs(y - ref).max() / np.abs(ref).max())


def ops_of(model: bytes) -> list[tuple[str, object]]:
    """(builtin op name, builtin options) of every operator, in order."""
    m = tfl.ModelT.InitFromPackedBuf(model, 0)
    return [(OP_NAMES[m.operatorCodes[o.opcodeIndex].builtinCode], o.builtinOptions)
            for o in m.subgraphs[0].operators]


def random_inputs(g, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n,) + g.values[g.input].shape).astype(np.float32)


def smooth_images(n: int, size: int, seed: int) -> np.ndarray:
    """(n, size, size, 3) CIFAR-normalized images: random 4x4 colour fields,
    bicubic-upsampled (smooth, in [0, 1] before normalization)."""
    rng = np.random.default_rng(seed)
    low = (rng.random((n, 4, 4, 3)) * 255).astype(np.uint8)
    x = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC), np.float32) / 255
                  for im in low])
    p = variants.CIFAR_PREPROCESS
    return ((x - np.float32(p["preprocess.mean"])) / np.float32(p["preprocess.std"])).astype(np.float32)


# ------------------------------------------------------------ tiny graphs

def conv(name, x, cout, k, stride=1, pad=0, groups=1):
    return Layer(name, "conv", (x,), out_channels=cout, kernel=k, stride=stride, pad=pad, groups=groups)


def pool(name, op, x, k, stride, pad):
    return Layer(name, op, (x,), kernel=k, stride=stride, pad=pad)


def head(x):
    """gap + fc(5): every seprt graph ends in flat features and logits."""
    return [Layer("pool", "gap", (x,)), Layer("fc", "fc", ("pool",), out_channels=5)]


# name -> layer list; convs without relu keep negative values (maxpool padding must never win)
TINY = {
    "conv_s2_p1": [conv("c", "input", 8, 3, 2, 1)],
    "conv_k5_s2_p1": [conv("c", "input", 8, 5, 2, 1)],
    "conv_relu": [conv("c", "input", 8, 3, 1, 1), Layer("r", "relu", ("c",))],
    "grouped_conv": [conv("c1", "input", 8, 1), conv("c2", "c1", 16, 3, 1, 1, groups=4),
                     conv("c3", "c2", 8, 3, 2, 1, groups=2)],
    "maxpool_p0": [conv("c", "input", 8, 3), pool("p", "maxpool", "c", 3, 2, 0)],
    "maxpool_p1": [conv("c", "input", 8, 3), pool("p", "maxpool", "c", 3, 2, 1)],
    "relu_maxpool_p1": [conv("c", "input", 8, 3), Layer("r", "relu", ("c",)), pool("p", "maxpool", "r", 3, 2, 1)],
    "avgpool_p0": [conv("c", "input", 8, 3), pool("p", "avgpool", "c", 3, 2, 0)],
    "avgpool_p1": [conv("c", "input", 8, 3), pool("p", "avgpool", "c", 3, 2, 1)],
    "avgpool_s1_p1": [conv("c", "input", 8, 3), pool("p", "avgpool", "c", 3, 1, 1)],
    "shortcut_a": [conv("c", "input", 8, 3, 1, 1), Layer("s", "shortcut_a", ("c",), stride=2, out_channels=16)],
    "add_relu": [conv("c1", "input", 8, 3, 1, 1), conv("c2", "c1", 8, 3, 1, 1),
                 Layer("sum", "add", ("c2", "c1")), Layer("r", "relu", ("sum",))],
    "relu_unfused": [conv("c", "input", 8, 3, 1, 1), Layer("r", "relu", ("c",)), Layer("sum", "add", ("c", "r"))],
    "fc_relu_fc": [conv("c", "input", 8, 3), Layer("gp", "gap", ("c",)), Layer("h", "fc", ("gp",), out_channels=6),
                   Layer("hr", "relu", ("h",)), Layer("fc", "fc", ("hr",), out_channels=5)],
    "depthwise": [conv("c", "input", 8, 3), conv("dw", "c", 8, 3, 1, 1, groups=8), Layer("r", "relu", ("dw",)),
                  conv("dw2", "r", 8, 3, 2, 1, groups=8)],
    "concat_relu": [conv("a", "input", 8, 3, 1, 1), conv("b", "input", 5, 1), conv("c", "a", 3, 3, 1, 1),
                    Layer("cat", "concat", ("a", "b", "c")), Layer("r", "relu", ("cat",))],
}


def tiny_graph(case: str, size: int):
    layers = TINY[case]
    if layers[-1].op != "fc":
        layers = layers + head(layers[-1].name)
    a = Arch(f"tiny-{case}", (size, size, 3), 5, tuple(layers))
    return variants.build_graph(a, variants.random_layers(a, seed=3), "R", variants.default_preprocess(a))


@pytest.mark.parametrize("size", [9, 10])      # odd sizes: SAME often matches; even: explicit PAD
@pytest.mark.parametrize("case", sorted(TINY))
def test_tiny_graph_parity(case, size):
    g = tiny_graph(case, size)
    x = random_inputs(g, 3)
    y = run_tflite(graph_to_tflite(g), x)
    assert y.shape == (3, 5)
    assert rel_err(y, reference.run(g, x)[g.output]) <= 1e-4


def test_stride2_pad1_conv_uses_same_only_when_exact():
    # 10x10, 3x3/2 pad 1: SAME would pad (0, 1), seprt pads (1, 1) -> PAD + VALID
    ops = ops_of(graph_to_tflite(tiny_graph("conv_s2_p1", 10)))
    assert [name for name, _ in ops][:2] == ["PAD", "CONV_2D"]
    assert ops[1][1].padding == tfl.Padding.VALID
    # 9x9: SAME pads (1, 1) -> one SAME conv
    ops = ops_of(graph_to_tflite(tiny_graph("conv_s2_p1", 9)))
    assert ops[0][0] == "CONV_2D" and ops[0][1].padding == tfl.Padding.SAME


def test_maxpool_explicit_padding():
    # any input: pad with the lowest float; relu output (>= 0): pad with 0
    assert [name for name, _ in ops_of(graph_to_tflite(tiny_graph("maxpool_p1", 10)))][1:3] == ["PADV2", "MAX_POOL_2D"]
    assert [name for name, _ in ops_of(graph_to_tflite(tiny_graph("relu_maxpool_p1", 10)))][1:3] == ["PAD", "MAX_POOL_2D"]


# ------------------------------------------------------------ whole models

@pytest.mark.parametrize("arch_id,variant,binarize", [
    ("resnet20", "R", "prb"), ("resnet20", "B", "all"),        # resnet20 has no PRB: binarize every 3x3
    ("sepnet-cifar", "R", "prb"), ("sepnet-cifar", "B", "prb"),
])
def test_model_parity(arch_id, variant, binarize):
    g = variants.random_graph(arch.get(arch_id), variant, binarize=binarize, seed=1)
    assert any(n.wfmt == "bin" for n in g.nodes) == (variant == "B")
    x = random_inputs(g, 4)
    y = run_tflite(graph_to_tflite(g), x)
    assert y.shape == (4, 10)
    assert rel_err(y, reference.run(g, x)[g.output]) <= 1e-4


def test_bq_graph_exports_dequantized_weights():
    # i8 -> q * scale, bin -> alpha * pattern; activation quantization is ignored,
    # so the reference is the same graph with float activations
    g = variants.random_graph(arch.get("sepnet-cifar"), "BQ", seed=1)
    assert {n.wfmt for n in g.nodes if n.op == "conv"} == {"i8", "bin"}
    g_float = dataclasses.replace(g, values=[dataclasses.replace(v, q_bits=0) for v in g.values])
    x = random_inputs(g, 4)
    assert rel_err(run_tflite(graph_to_tflite(g), x), reference.run(g_float, x)[g.output]) <= 1e-4


def test_relu_fusion_and_tensor_names():
    g = variants.random_graph(arch.get("resnet20"), "R", seed=0)
    model = graph_to_tflite(g)
    ops = ops_of(model)
    assert "RELU" not in [name for name, _ in ops]          # every relu follows a single-use conv/add
    n_relu = sum(n.op == "relu" for n in g.nodes)
    assert sum(getattr(o, "fusedActivationFunction", 0) == tfl.ActivationFunctionType.RELU for _, o in ops) == n_relu
    interp = Interpreter(model_content=model)
    names = {d["name"] for d in interp.get_tensor_details()}
    fused_away = {g.values[n.inputs[0]].name for n in g.nodes if n.op == "relu"}
    assert {v.name for v in g.values} - fused_away <= names
    assert interp.get_input_details()[0]["name"] == "input"
    assert interp.get_output_details()[0]["name"] == "fc"


def test_run_from_path_batch_and_threads(tmp_path):
    g = variants.random_graph(arch.get("resnet20"), "R", seed=2)
    path = tmp_path / "resnet20.tflite"
    path.write_bytes(graph_to_tflite(g))
    x = random_inputs(g, 5, seed=4)
    y1 = run_tflite(path, x, threads=2)
    y2 = np.concatenate([run_tflite(str(path), x[i:i + 1]) for i in range(5)])
    assert y1.shape == (5, 10)
    assert rel_err(y1, y2) <= 1e-5


def test_sepnet_t8_exports_and_runs():
    g = variants.random_graph(arch.get("sepnet-t8"), "B", seed=0)
    x = random_inputs(g, 1)
    y = run_tflite(graph_to_tflite(g), x)
    assert y.shape == (1, 1000)
    # conv1 5x5/2 pad 1 on 224 gives 111 (SAME would give 112): explicit PAD
    assert rel_err(y, reference.run(g, x)[g.output]) <= 1e-4


# ------------------------------------------------------------ int8

def discriminative_b_graph(arch_id: str, binarize: str, calib: np.ndarray):
    """A random B graph whose fc is a whitened PCA of its features on calib,
    so that top-1 varies across inputs (a random fc picks one class for all)."""
    a = arch.get(arch_id)
    layers = variants.binarize_layers(a, variants.random_layers(a, seed=0), binarize)
    meta = variants.default_preprocess(a)
    g = variants.build_graph(a, layers, "B", meta)
    f = reference.run(g, calib, outputs=(g.embed,))[g.embed]           # (N, C)
    mu = f.mean(axis=0)
    _, s, vt = np.linalg.svd(f - mu, full_matrices=False)
    w = (vt[:a.num_classes] / s[:a.num_classes, None] * np.sqrt(len(f))).astype(np.float32)   # (K, C)
    layers["fc"] = {"weight": w, "bias": (-w @ mu).astype(np.float32)}
    return variants.build_graph(a, layers, "B", meta)


# measured (seeds 0-2, 200 held-out images): resnet20 92.5-94.5 %, sepnet-cifar 77-82 %
@pytest.mark.parametrize("arch_id,binarize,min_agree", [("resnet20", "all", 0.85), ("sepnet-cifar", "prb", 0.7)])
def test_int8_model(arch_id, binarize, min_agree):
    calib = smooth_images(64, 32, seed=100)
    g = discriminative_b_graph(arch_id, binarize, calib)
    fp32 = graph_to_tflite(g)
    int8 = quantize_int8(fp32, calib)

    interp = Interpreter(model_content=int8)
    interp.allocate_tensors()
    dtypes = {d["name"]: d["dtype"] for d in interp.get_tensor_details()}
    in_name, out_name = interp.get_input_details()[0]["name"], interp.get_output_details()[0]["name"]
    assert {n for n, t in dtypes.items() if t == np.float32} == {in_name, out_name}
    for n in g.nodes:
        if n.op == "conv":
            assert dtypes[f"{n.name}.weight"] == np.int8 and dtypes[f"{n.name}.bias"] == np.int32
    names = [name for name, _ in ops_of(int8)]
    assert names[0] == "QUANTIZE" and names[-1] == "DEQUANTIZE"

    x = smooth_images(200, 32, seed=7)
    yf, yq = run_tflite(fp32, x), run_tflite(int8, x)
    assert yq.shape == (200, 10)
    assert len(np.unique(yf.argmax(1))) >= 5                 # the test is not trivial
    agree = float(np.mean(yf.argmax(1) == yq.argmax(1)))
    assert agree >= min_agree, f"int8 top-1 agrees with fp32 on {agree:.1%}"


def test_depthwise_and_concat_ops():
    assert [name for name, _ in ops_of(graph_to_tflite(tiny_graph("depthwise", 9)))][:3] == \
        ["CONV_2D", "DEPTHWISE_CONV_2D", "DEPTHWISE_CONV_2D"]
    ops = ops_of(graph_to_tflite(tiny_graph("concat_relu", 9)))
    cat = [i for i, (name, _) in enumerate(ops) if name == "CONCATENATION"]
    assert len(cat) == 1 and ops[cat[0]][1].axis == 3 and ops[cat[0] + 1][0] == "RELU"


@pytest.mark.parametrize("case", ["relu_maxpool_p1", "avgpool_p1", "shortcut_a", "grouped_conv", "conv_k5_s2_p1",
                                  "depthwise", "concat_relu"])
def test_int8_tiny_graph_runs(case):
    g = tiny_graph(case, 10)                     # 10x10: the explicit PAD (and avgpool MUL) paths
    x = random_inputs(g, 40)
    fp32 = graph_to_tflite(g)
    yf, yq = run_tflite(fp32, x[32:]), run_tflite(quantize_int8(fp32, x[:32]), x[32:])
    assert rel_err(yq, yf) <= 0.15             # measured 0.008 (maxpool) to 0.063 (avgpool)


def test_int8_refuses_padv2():
    with pytest.raises(ValueError, match="PADV2"):
        quantize_int8(graph_to_tflite(tiny_graph("maxpool_p1", 10)), np.zeros((1, 10, 10, 3), np.float32))
