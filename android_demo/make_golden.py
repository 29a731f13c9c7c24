"""Golden data for the Java core's parity tests (android_demo/core/src/test).

    python android_demo/make_golden.py                  # rewrite android_demo/testdata/
    python android_demo/make_golden.py --out DIR        # the same into DIR (build.sh test: per machine)
    python android_demo/make_golden.py --models DIR     # only (re)generate the random models into DIR

The Python runtime (seprt, reference engine) computes, for every test model and input, the
logits and the top-5; the Java tests must reproduce them. testdata/ holds:

    golden.txt              one record per line (format below)
    models/demo.bin         a copy of seprt/data/demo.bin (the shipped model at golden time)
    inputs/<sample>.f32     preprocessed sample images, (32, 32, 3) little-endian float32
    images/<sample>.rgb     the same images decoded by Pillow, raw (H, W, 3) uint8 RGB
    preprocess/<case>.*     resize/normalize cases: .rgb input pixels, .f32 expected tensor

The random models (resnet20 R, sepnet-cifar B / BQ, sepnet-t8 BQ, "tiny" models that cover
every op and path, "concat-dw" models with concat and depthwise convs, and "demo-v2", the v1 demo
model re-written as v2; all v2 files) are not committed. Their BQ activation scales come from a
float32 calibration run of the numpy reference, whose last bits depend on the CPU (numpy's and
BLAS's summation order differs between AVX2 and AVX-512): the same code writes different BQ files
on a Zen 2 and on a Zen 4. So `build.sh test` regenerates models and golden data on the machine
that runs the tests (--out build/testdata), and the committed testdata/golden.txt is the copy made
on the machine named in its header; golden.txt records each model's SHA-256 so a test run notices
a model that is not the one its golden data was made from.

golden.txt records (space-separated; names have no spaces):
    model NAME SOURCE SHA256        SOURCE: "testdata:<path>" or "generated:<file in --models DIR>"
    input NAME f32:<path> | rgb:<path> W H
    expect MODEL INPUT TOP5 LOGITS...     TOP5 comma-separated class indices; logits as %.9g
    preprocess CASE RGB W H RESIZE SIZE_H SIZE_W CROP_FRACTION ORDER MEAN3 STD3 EXPECTED
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from seprt import arch, format, image, reference, stacked, variants  # noqa: E402
from seprt.arch import ROLE_PATTERN, Arch, Layer  # noqa: E402
from seprt.graph import Value, make_node  # noqa: E402
from seprt.ops import get_op  # noqa: E402
from seprt.model import Model, demo_images, demo_model_path  # noqa: E402


def tiny_arch() -> Arch:
    """A 12x10 net that uses every op and path: padded max/avg pools, option-A shortcut,
    grouped convs, a 5x5 stride-2 conv, a conv with 80 input channels per group (patterns of
    720 bits), convs fed by non-relu values (zero point != 0 when quantized)."""
    L = Layer
    layers = (
        L("conv1", "conv", ("input",), 8, 3, 1, 1),                       # bin conv on the image input
        L("conv1.relu", "relu", ("conv1",)),
        L("pool1", "maxpool", ("conv1.relu",), kernel=3, stride=2, pad=1),
        L("b1.conv1", "conv", ("pool1",), 8, 3, 1, 1, groups=2, role=ROLE_PATTERN),
        L("b1.conv2", "conv", ("b1.conv1",), 8, 3, 1, 1),                 # reads a non-relu value
        L("b1.sum", "add", ("b1.conv2", "pool1")),
        L("b1.relu", "relu", ("b1.sum",)),
        L("b2.conv", "conv", ("b1.relu",), 16, 5, 2, 2),
        L("b2.shortcut", "shortcut_a", ("b1.relu",), out_channels=16, stride=2),
        L("b2.sum", "add", ("b2.conv", "b2.shortcut")),
        L("b2.relu", "relu", ("b2.sum",)),
        L("wide", "conv", ("b2.relu",), 80, 1),
        L("wide.relu", "relu", ("wide",)),
        L("b3.conv", "conv", ("wide.relu",), 12, 3, 1, 1),                # 3*3*80 = 720 pattern bits
        L("b3.pool", "avgpool", ("b3.conv",), kernel=3, stride=2, pad=1),
        L("pool", "gap", ("b3.pool",)),
        L("fc", "fc", ("pool",), out_channels=7),
    )
    return Arch("tiny", (12, 10, 3), 7, layers, description="android_demo parity test net")


def concat_arch() -> Arch:
    """A 12x10 net with channel concatenation (3 inputs, and 2 with one of them re-read) and
    depthwise convs (groups = C = K: stride 1 and 2, 3x3 and 5x5, one reading a concat output);
    binarized, a depthwise conv has 9- or 25-bit pattern rows."""
    L = Layer
    layers = (
        L("conv1", "conv", ("input",), 8, 3, 1, 1),
        L("conv1.relu", "relu", ("conv1",)),
        L("dw1", "conv", ("conv1.relu",), out_channels=8, kernel=3, pad=1, groups=8),
        L("dw1.relu", "relu", ("dw1",)),
        L("pw1", "conv", ("dw1.relu",), 6, 1),
        L("side", "conv", ("conv1.relu",), 4, 3, 1, 1, groups=4),
        L("cat1", "concat", ("pw1", "side", "conv1.relu")),              # 6 + 4 + 8 = 18 channels
        L("dw2", "conv", ("cat1",), out_channels=18, kernel=5, stride=2, pad=2, groups=18),
        L("dw2.relu", "relu", ("dw2",)),
        L("pw2", "conv", ("dw2.relu",), 10, 1),
        L("pw2.relu", "relu", ("pw2",)),
        L("cat2", "concat", ("pw2.relu", "dw2.relu")),                   # 10 + 18 = 28 channels
        L("pool", "gap", ("cat2",)),
        L("fc", "fc", ("pool",), out_channels=5),
    )
    return Arch("concat-dw", (12, 10, 3), 5, layers, description="android_demo concat/depthwise parity net")


def resaved(path: str):
    """The model of a file, as the current writer writes it (a v2 copy of a v1 file)."""
    return format.from_bytes(format.to_bytes(format.load(path)))


def float_inputs(g, names):
    """The same graph with the named values made float (q_bits 0): their readers take the float path."""
    idx = {v.name: i for i, v in enumerate(g.values)}
    for name in names:
        v = g.values[idx[name]]
        g.values[idx[name]] = Value(v.name, v.shape)
    g.validate()
    return g


def add(g, name: str, op: str, inputs, attrs=None, weights=None, width=None, replace=None):
    """Graph surgery: a new node `name = op(*inputs)` (value names), placed right after the last
    producer of its inputs. replace: a value that the new one replaces for every later reader
    (and as graph output/embed); the new value keeps its quantization, so convs that read it stay
    on the integer path. width: the output's last dim where the op takes it from the output
    (slice). Shapes downstream are recomputed."""
    idx = {v.name: i for i, v in enumerate(g.values)}
    ins = tuple(idx[x] for x in inputs)
    first = g.values[ins[0]]
    q = g.values[idx[replace]] if replace else Value("", ())
    g.values.append(Value(name, tuple(first.shape[:-1]) + (width or first.shape[-1],), q.q_scale, q.q_zero,
                          q.q_bits))
    new = len(g.values) - 1
    at = max([0] + [i + 1 for i, n in enumerate(g.nodes) if n.output in ins])
    if replace:
        for n in g.nodes[at:]:
            n.inputs = tuple(new if v == idx[replace] else v for v in n.inputs)
        g.output = new if g.output == idx[replace] else g.output
        g.embed = new if g.embed == idx[replace] else g.embed
    g.nodes.insert(at, make_node(name, op, ins, new, attrs, weights))
    reshape(g)
    return g


def after(g, value: str, op: str, attrs=None, weights=None, name=None):
    """op(value) replacing value for its readers."""
    return add(g, name or f"{value}.{op}", op, (value,), attrs, weights, replace=value)


def reshape(g):
    """Every value's shape from the op shape rules, in node order (conv weights do not depend on
    H and W, so a pool that changes them only changes the shapes downstream)."""
    for n in g.nodes:
        v = g.values[n.output]
        shape = get_op(n.op).shape(n.attrs, [tuple(g.values[i].shape) for i in n.inputs], v.shape[-1])
        g.values[n.output] = Value(v.name, tuple(shape), v.q_scale, v.q_zero, v.q_bits)


def affine_weights(rng, c: int) -> dict:
    return {"wfmt": "f32", "weight": rng.uniform(0.5, 1.5, c).astype(np.float32),
            "bias": rng.normal(0, 0.1, c).astype(np.float32)}


def new_ops(g, seed: int, exp: bool = True):
    """tiny with the ops added to the op table spliced in: act (all six kinds, leaky with f32
    slopes), mul (a squeeze-and-excitation gate), affine on (H, W, C) and (C,), shuffle, slice +
    concat, flatten before the classifier (an fc over the whole map), and pools with ceil_mode and
    count_include_pad. exp=False: hardsigmoid and leaky in place of sigmoid and silu (whose float32
    exp is not bit-identical across platforms), for models that must be bit-identical."""
    rng = np.random.default_rng(seed)
    for n in g.nodes:
        if n.name == "pool1":       # 3x3/2 pad 1 on 12x10: ceil mode gives 7x6 (floor: 6x5)
            n.attrs = {**n.attrs, "ceil_mode": 1}
        if n.name == "b3.pool":     # 3x3/2 pad 1 on 4x3 in ceil mode: windows past the input
            n.attrs = {**n.attrs, "ceil_mode": 1, "count_include_pad": 1}
    reshape(g)
    after(g, "conv1.relu", "act", {"kind": 1})                                   # relu6
    after(g, "pool1", "shuffle", {"groups": 2})
    after(g, "b1.conv1", "act", {"kind": 2, "slope": 0.2})                       # leaky, f32 attribute
    after(g, "b1.conv2", "affine", weights=affine_weights(rng, 8))
    after(g, "b1.sum", "act", {"kind": 4})                                       # hardswish
    # squeeze-and-excitation on b2.relu (16 channels): gap -> sigmoid -> mul -> hardsigmoid
    add(g, "se.pool", "gap", ("b2.relu",))
    add(g, "se.gate", "act", ("se.pool",), {"kind": 5 if exp else 6})             # sigmoid
    add(g, "se.mul", "mul", ("b2.relu", "se.gate"), replace="b2.relu")
    after(g, "se.mul", "act", {"kind": 6})                                       # hardsigmoid
    after(g, "wide.relu", "act", {"kind": 3} if exp else {"kind": 2, "slope": 0.125})  # silu
    # the 80 channels sliced into 32 + 48 and concatenated back (K from the output value)
    add(g, "lo", "slice", ("wide.relu.act",), {"start": 0}, width=32)
    add(g, "hi", "slice", ("wide.relu.act",), {"start": 32}, width=48)
    add(g, "cat", "concat", ("lo", "hi"), replace="wide.relu.act")
    # the classifier over the whole (flattened) pooled map instead of the gap
    fc = next(n for n in g.nodes if n.op == "fc")
    gap = next(n for n in g.nodes if n.output == fc.inputs[0])
    gap.op, gap.attrs = "flatten", {}
    reshape(g)
    cin, k = g.values[gap.output].shape[0], g.values[fc.output].shape[0]
    w = fc.tensors[0]
    w = (rng.normal(0, (2 / cin) ** 0.5, (k, cin)).astype(np.float32) if fc.wfmt == "f32"
         else rng.integers(-127, 128, (k, cin)).astype(w.dtype))
    fc.tensors = (w,) + tuple(fc.tensors[1:])
    pooled = g.values[gap.output].name
    after(g, pooled, "act", {"kind": 2, "slope": -0.5})                          # negative slope, rank 1
    after(g, pooled + ".act", "affine", weights=affine_weights(rng, cin))        # affine on a (C,) value
    g.validate()
    return g


def stacked_graph(a: Arch, variant: str, d: int, m: int, seed: int, act_bits: int = 8, negate: str = "",
                  one_by_one: str = "", wfmt: str = "stack"):
    """a with every k x k conv in a stacked format, wfmt `stack` (a byte per index) or
    `stack_packed` (bank of m ±1 filters of depth d); negate: a conv whose alpha is negated
    (alpha may be negative: a BN fold with gamma < 0); one_by_one: a 1x1 conv stacked too (the
    format allows k = 1, bin does not)."""
    layers = stacked.stack_layers(a, variants.random_layers(a, seed), d, m, iters=3)
    if one_by_one:
        w = layers[one_by_one]["weight"]
        dd, mm = stacked.layer_dm(w.shape[3], w.shape[0], d, m)
        bank, index, alpha = stacked.cluster_slices(w, dd, mm, 3)
        layers[one_by_one] = {**layers[one_by_one], "bank": bank, "index": index, "alpha": alpha}
    if negate:
        layers[negate] = {**layers[negate], "alpha": -np.asarray(layers[negate]["alpha"])}
    meta = {**variants.default_preprocess(a), "provenance.source": f"random weights, seed {seed} (not trained)"}
    calib = np.random.default_rng(seed + 1).standard_normal((8,) + a.input_shape).astype(np.float32)
    g = variants.build_graph(a, layers, variant, meta, calib if variant == "BQ" else None, act_bits)
    return stacked.byte_index(g) if wfmt == "stack" else g


def random_models() -> dict:
    """name -> Graph of every generated test model."""
    t = tiny_arch()
    cat = concat_arch()
    tiny_bq8 = variants.random_graph(t, "BQ", "all", seed=11)
    return {
        # the shipped v1 demo model re-written as v2: the same graph, the same logits
        "demo-v2": resaved(demo_model_path()),
        "resnet20-R": variants.random_graph(arch.get("resnet20"), "R", seed=1),
        "sepnet-cifar-B": variants.random_graph(arch.get("sepnet-cifar"), "B", seed=2),
        "sepnet-cifar-BQ4": variants.random_graph(arch.get("sepnet-cifar"), "BQ", seed=3, act_bits=4),
        "sepnet-cifar-BQ8-all": variants.random_graph(arch.get("sepnet-cifar"), "BQ", "all", seed=4),
        "sepnet-t8-BQ": variants.random_graph(arch.get("sepnet-t8"), "BQ", seed=5),
        "tiny-R": variants.random_graph(t, "R", seed=10),
        "tiny-B": variants.random_graph(t, "B", "all", seed=10),
        "tiny-BQ8": tiny_bq8,
        "tiny-BQ4": variants.random_graph(t, "BQ", "all", seed=12, act_bits=4),
        "tiny-BQ2": variants.random_graph(t, "BQ", "all", seed=13, act_bits=2),
        # i8 and bin weights whose input is not quantized: float path with W = q*scale, ±alpha
        "tiny-mixed": float_inputs(variants.random_graph(t, "BQ", "all", seed=11), ["b2.relu", "pool1"]),
        # concat and depthwise convs: float (R), patterns + float (B), integer paths (BQ 8 and 4 bits)
        "concat-dw-R": variants.random_graph(cat, "R", seed=20),
        "concat-dw-B": variants.random_graph(cat, "B", "all", seed=21),
        "concat-dw-BQ8": variants.random_graph(cat, "BQ", "all", seed=22),
        "concat-dw-BQ4": variants.random_graph(cat, "BQ", "all", seed=23, act_bits=4),
        "concat-dw-BQ8-i8": variants.random_graph(cat, "BQ", "prb", seed=24),    # no pattern convs: i8 depthwise
        # today's ops (act, mul, affine, shuffle, flatten, slice, ceil-mode pools) in float and BQ
        "newops-R": new_ops(variants.random_graph(t, "R", seed=30), 30),
        "newops-BQ8": new_ops(variants.random_graph(t, "BQ", "all", seed=31), 31, exp=False),
        "newops-BQ4": new_ops(variants.random_graph(t, "BQ", "all", seed=32, act_bits=4), 32, exp=False),
        "newops-BQ8-exp": new_ops(variants.random_graph(t, "BQ", "all", seed=33), 33),   # silu, sigmoid
        # the stack weight format: integer path (BQ), float path (B), a negative alpha
        "tiny-stack-BQ8": stacked_graph(t, "BQ", 4, 8, 40, negate="b1.conv2"),
        "tiny-stack-BQ4": stacked_graph(t, "BQ", 2, 5, 41, act_bits=4, one_by_one="wide"),
        "concat-dw-stack-BQ8": stacked_graph(cat, "BQ", 4, 6, 42),
        "tiny-stack-B": stacked_graph(t, "B", 4, 8, 43, negate="b1.conv2"),
        # stack_packed: 3-bit indices (b3.conv: 12 of them, 4 padding bits per row), 2-bit, dw convs
        "tiny-stack-packed-BQ8": stacked_graph(t, "BQ", 4, 6, 44, negate="b1.conv2", wfmt="stack_packed"),
        "tiny-stack-packed-BQ4": stacked_graph(t, "BQ", 2, 3, 45, act_bits=4, one_by_one="wide",
                                               wfmt="stack_packed"),
        "concat-dw-stack-packed-BQ8": stacked_graph(cat, "BQ", 4, 6, 46, wfmt="stack_packed"),
    }


def write_models(out_dir: str) -> dict:
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for name, g in random_models().items():
        path = os.path.join(out_dir, name + ".bin")
        format.save(g, path)
        paths[name] = path
    return paths


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def f32_line(a) -> str:
    return " ".join(f"{float(v):.9g}" for v in np.asarray(a, np.float32).ravel())


def top5(logits) -> str:
    p = reference.softmax(np.asarray(logits, np.float64)[None])[0]
    return ",".join(str(i) for i in np.argsort(-p, kind="stable")[:5])


def preprocess_cases(td: str, lines: list) -> None:
    """Pillow resize + normalize on fixed pixels: the Java Preprocessor must give the same floats."""
    os.makedirs(os.path.join(td, "preprocess"), exist_ok=True)
    rng = np.random.default_rng(7)
    smooth = np.clip(rng.normal(128, 60, (37, 45, 3)), 0, 255).astype(np.uint8)
    cases = [
        ("shrink-stretch", smooth, "stretch", (32, 32), 0.875, "RGB"),
        ("shrink-crop", smooth, "center_crop", (24, 24), 0.875, "RGB"),
        ("grow-crop-bgr", smooth[:13, :20], "center_crop", (28, 30), 0.9, "BGR"),
        ("grow-stretch", smooth[:7, :9], "stretch", (16, 20), 0.875, "RGB"),
        ("same-size", smooth[:32, :32], "stretch", (32, 32), 0.875, "RGB"),
    ]
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    for name, rgb, resize, size, cf, order in cases:
        meta = {"preprocess.size": list(size), "preprocess.resize": resize, "preprocess.crop_fraction": cf,
                "preprocess.mean": mean, "preprocess.std": std, "preprocess.channel_order": order}
        # the metadata floats as the file stores them (f32), as a loaded model would see them
        meta = {k: ([float(np.float32(x)) for x in v] if k in ("preprocess.mean", "preprocess.std")
                    else float(np.float32(v)) if k == "preprocess.crop_fraction" else v) for k, v in meta.items()}
        x = image.preprocess(np.ascontiguousarray(rgb), meta)
        rgb_path, f32_path = f"preprocess/{name}.rgb", f"preprocess/{name}.f32"
        np.ascontiguousarray(rgb).tofile(os.path.join(td, rgb_path))
        x.astype("<f4").tofile(os.path.join(td, f32_path))
        lines.append(f"preprocess {name} {rgb_path} {rgb.shape[1]} {rgb.shape[0]} {resize} {size[0]} {size[1]} "
                     f"{cf:.9g} {order} {' '.join(f'{v:.9g}' for v in mean)} {' '.join(f'{v:.9g}' for v in std)} "
                     f"{f32_path}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", metavar="DIR", help="only write the generated models into DIR")
    ap.add_argument("--out", metavar="DIR", default=os.path.join(HERE, "testdata"),
                    help="golden data directory (default: android_demo/testdata)")
    ap.add_argument("--models-out", metavar="DIR", default=os.path.join(HERE, "build", "testmodels"),
                    help="where the generated models go (default: android_demo/build/testmodels)")
    args = ap.parse_args()
    if args.models:
        for name, path in write_models(args.models).items():
            print(f"{path}  {sha256(path)}")
        return 0

    td = args.out
    for sub in ("models", "inputs", "images", "preprocess"):
        shutil.rmtree(os.path.join(td, sub), ignore_errors=True)
        os.makedirs(os.path.join(td, sub))
    gen_dir = args.models_out
    paths = {"demo": os.path.join(td, "models", "demo.bin")}
    shutil.copyfile(demo_model_path(), paths["demo"])
    paths.update(write_models(gen_dir))

    import platform
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "benchmarks"))
    from run import cpu_name
    lines = ["# android_demo/testdata/golden.txt: written by android_demo/make_golden.py; do not edit",
             f"# made on {cpu_name()}, {platform.machine()}, numpy {np.__version__}"]
    for name, path in paths.items():
        src = "testdata:models/demo.bin" if name == "demo" else f"generated:{name}.bin"
        lines.append(f"model {name} {src} {sha256(path)}")

    # inputs: sample images as Pillow decodes them, and their CIFAR-preprocessed tensors
    cifar = Model(paths["demo"], engine="reference")
    inputs = {}
    for p in demo_images():
        name = os.path.splitext(os.path.basename(p))[0]
        rgb = image.load_rgb(p)
        rgb.tofile(os.path.join(td, "images", name + ".rgb"))
        lines.append(f"input {name}.rgb rgb:images/{name}.rgb {rgb.shape[1]} {rgb.shape[0]}")
        x = cifar.preprocess(p)
        x.astype("<f4").tofile(os.path.join(td, "inputs", name + ".f32"))
        lines.append(f"input {name} f32:inputs/{name}.f32")
        inputs[name] = (rgb, x)

    for name, path in paths.items():
        m = Model(path, engine="reference")
        if m.input_shape == (32, 32, 3):
            cases = [(s, x) for s, (_, x) in inputs.items()]
        else:   # tiny (12x10) and sepnet-t8 (224x224): the model preprocesses the decoded pixels
            picks = list(inputs) if name.startswith(("tiny", "concat", "newops")) else ["cat-4774", "ship-4751"]
            cases = [(s + ".rgb", m.preprocess(inputs[s][0])) for s in picks]
        for input_name, x in cases:
            logits = m.logits(x)[0]
            lines.append(f"expect {name} {input_name} {top5(logits)} {f32_line(logits)}")
        print(f"{name}: {len(cases)} inputs")

    preprocess_cases(td, lines)
    with open(os.path.join(td, "golden.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(td) for f in fs)
    print(f"wrote {td}: {total:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
