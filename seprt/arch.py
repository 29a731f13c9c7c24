"""Architectures as plain data: one layer list per architecture id.

This module is the single source of truth for every network seprt knows.
The runtime graph (`seprt.graph`) is built from these lists; outside
`seprt/`, `training/models.py` writes the same networks as ordinary PyTorch
modules (a test checks that they compute what the lists say), which train
and convert like any user model.

A layer list is read top to bottom; each layer names its inputs by the names
of earlier layers (or ``"input"``) and its own output by its name. Every
``conv`` is followed by batch norm at training time and carries a bias after
BN folding; ``fc`` carries its own bias. Activations are NHWC without the
batch axis.

Example:
    >>> a = get("resnet20")
    >>> a.input_shape, a.num_classes, a.params()
    ((32, 32, 3), 10, 268336)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .errors import FormatError
from .ops import get_op

# Conv roles: which convs a binarization mode turns into patterns.
ROLE_PATTERN = "pattern"   # the k x k conv of a pattern residual block (PRB)
ROLE_PLAIN = "plain"       # any other conv (stem, downsampling, ResNet 3x3, 1x1)

CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer",
                  "dog", "frog", "horse", "ship", "truck")
# ImageNet class names are not shipped: numbered placeholders in logit order
IMAGENET_LABELS = tuple(f"class_{i}" for i in range(1000))


@dataclass(frozen=True)
class Layer:
    """One layer of an architecture.

    op is an op of the table (seprt/ops); the fields it uses are its attributes:
    conv: out_channels, kernel, stride, pad, groups, role.
    fc: out_channels. maxpool/avgpool: kernel, stride, pad.
    shortcut_a: stride, out_channels (option-A ResNet shortcut: spatial
    subsample by `stride`, zero-pad channels equally on both sides).
    """
    name: str
    op: str
    inputs: tuple[str, ...]
    out_channels: int = 0
    kernel: int = 1
    stride: int = 1
    pad: int = 0
    groups: int = 1
    role: str = ROLE_PLAIN


@dataclass(frozen=True)
class Arch:
    """A named architecture: input shape (H, W, C), classes and layer list."""
    id: str
    input_shape: tuple[int, int, int]
    num_classes: int
    layers: tuple[Layer, ...]
    labels: tuple[str, ...] = field(default=())
    description: str = ""

    @property
    def output(self) -> str:
        """Name of the logits layer (the last one)."""
        return self.layers[-1].name

    @property
    def embed(self) -> str:
        """Name of the pooled feature layer feeding the classifier."""
        return self.layers[-1].inputs[0]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Output shape of every layer, keyed by name (plus "input")."""
        shapes: dict[str, tuple[int, ...]] = {"input": self.input_shape}
        for l in self.layers:
            shapes[l.name] = layer_output_shape(l, [shapes[i] for i in l.inputs])
        return shapes

    def weight_counts(self) -> dict[str, int]:
        """Weights per weighted layer (conv, fc; biases and BN not counted)."""
        shapes = self.shapes()
        out = {}
        for l in self.layers:
            op = get_op(l.op)
            if op.weighted:
                out[l.name] = math.prod(op.kernel_shape(l, shapes[l.inputs[0]][-1], l.out_channels))
        return out

    def params(self) -> int:
        """Conv and FC weights, biases not counted (the paper's count)."""
        return sum(self.weight_counts().values())

    def macs(self) -> int:
        """Multiply-accumulates of conv and FC layers for one image."""
        shapes = self.shapes()
        total = 0
        for name, n in self.weight_counts().items():
            s = shapes[name]
            total += n * (s[0] * s[1] if len(s) == 3 else 1)
        return total


def layer_attrs(l: Layer) -> dict:
    """The op attributes of a layer (those its op declares in seprt/ops; a
    Layer field the op table gained later, e.g. ceil_mode, has its default)."""
    return {a.name: getattr(l, a.name, a.default) for a in get_op(l.op).attrs}


def layer_output_shape(l: Layer, ins: list[tuple[int, ...]]) -> tuple[int, ...]:
    """Shape inference for one layer (the op table's rule); raises ValueError on a mismatch."""
    try:
        op = get_op(l.op)
    except FormatError:
        raise ValueError(f"{l.name}: unknown op {l.op!r}") from None
    if not op.inputs[0] <= len(ins) <= op.inputs[1]:
        raise ValueError(f"{l.name}: {l.op} takes {op.inputs[0]}..{op.inputs[1]} inputs, got {len(ins)}")
    try:
        return tuple(op.shape(op.with_defaults(layer_attrs(l)), ins, l.out_channels))
    except ValueError as e:
        raise ValueError(f"{l.name}: {e}") from None


# ---------------------------------------------------------------- builders

class _Builder:
    """Appends layers; `conv_bn` is conv (+BN at training time) [+ relu]."""

    def __init__(self):
        self.layers: list[Layer] = []

    def add(self, name, op, inputs, **kw) -> str:
        self.layers.append(Layer(name, op, tuple(inputs), **kw))
        return name

    def conv(self, name, x, cout, k, stride=1, pad=None, groups=1, role=ROLE_PLAIN, relu=False) -> str:
        pad = (k // 2) if pad is None else pad
        y = self.add(name, "conv", [x], out_channels=cout, kernel=k, stride=stride, pad=pad, groups=groups, role=role)
        return self.add(name + ".relu", "relu", [y]) if relu else y


def _sep_module(b: _Builder, name: str, x: str, c: int, width: int, svd1_groups: int = 1, groups: int = 4) -> str:
    """SEP-Net module: svd1 (1x1 reduce to `width`) -> PRB slice1 (width) ->
    PRB slice2 (width/2) -> svd2 (1x1 restore to c) -> + x -> relu.

    A pattern residual block (PRB) is a k x k conv and a 1x1 conv in parallel
    on the same input, summed, then relu. The k x k conv is the pattern conv.
    """
    h = b.conv(f"{name}.svd1", x, width, 1, groups=svd1_groups, relu=True)
    for slice_name, cout in (("slice1", width), ("slice2", width // 2)):
        a = b.conv(f"{name}.{slice_name}.1x1", h, cout, 1, groups=groups)
        p = b.conv(f"{name}.{slice_name}.3x3", h, cout, 3, groups=groups, role=ROLE_PATTERN)
        s = b.add(f"{name}.{slice_name}.sum", "add", [a, p])
        h = b.add(f"{name}.{slice_name}.relu", "relu", [s])
    r = b.conv(f"{name}.svd2", h, c, 1)
    s = b.add(f"{name}.sum", "add", [r, x])
    return b.add(f"{name}.relu", "relu", [s])


def _sepnet_imagenet(conv4_groups: int, conv3_groups: int, conv5_out: int, conv5_groups: int) -> tuple[Layer, ...]:
    """The paper's ImageNet SEP-Net (Tables 7 and 8), 224x224 input.

    Pooling is not in the tables: a 3x3/2 max-pool follows conv1 (as in
    GoogLeNet); conv5 is followed by relu, global average pool and a
    1000-way classifier. Module 5's svd1 uses 4 groups (Table 7).
    """
    b = _Builder()
    x = b.conv("conv1", "input", 64, 5, stride=2, pad=1, relu=True)
    x = b.add("pool1", "maxpool", [x], kernel=3, stride=2, pad=0)
    x = _sep_module(b, "module1", x, 64, 32)
    x = b.conv("conv2", x, 128, 3, stride=2, pad=1, relu=True)
    x = _sep_module(b, "module2", x, 128, 64)
    x = b.conv("conv3", x, 256, 3, stride=2, pad=1, groups=conv3_groups, relu=True)
    x = _sep_module(b, "module3", x, 256, 128)
    x = _sep_module(b, "module4", x, 256, 128)
    x = b.conv("conv4", x, 256, 3, stride=2, pad=1, groups=conv4_groups, relu=True)
    x = _sep_module(b, "module5", x, 256, 128, svd1_groups=4)
    x = _sep_module(b, "module6", x, 256, 128)
    x = b.conv("conv5", x, conv5_out, 3, stride=2, pad=1, groups=conv5_groups, relu=True)
    x = b.add("pool", "gap", [x])
    b.add("fc", "fc", [x], out_channels=1000)
    return tuple(b.layers)


def _sepnet_cifar() -> tuple[Layer, ...]:
    """seprt's SEP-Net for 32x32 CIFAR-10: the paper's module, PRB and
    4-group structure, scaled to 0.23M weights so that the BQ file (patterns
    + int8) stays under 200 KB.

    conv1 3x3 (32) -> 2x module(32) -> conv2 3x3/2 g2 (64) -> 3x module(64)
    -> conv3 3x3/2 g4 (160) -> 4x module(160) -> GAP -> fc(10).
    """
    b = _Builder()
    x = b.conv("conv1", "input", 32, 3, relu=True)
    for i in (1, 2):
        x = _sep_module(b, f"module{i}", x, 32, 16)
    x = b.conv("conv2", x, 64, 3, stride=2, groups=2, relu=True)
    for i in (3, 4, 5):
        x = _sep_module(b, f"module{i}", x, 64, 32)
    x = b.conv("conv3", x, 160, 3, stride=2, groups=4, relu=True)
    for i in (6, 7, 8, 9):
        x = _sep_module(b, f"module{i}", x, 160, 80)
    x = b.add("pool", "gap", [x])
    b.add("fc", "fc", [x], out_channels=10)
    return tuple(b.layers)


def _resnet_cifar(depth: int) -> tuple[Layer, ...]:
    """He et al. (2016) CIFAR ResNet, depth = 6n + 2, option-A shortcuts."""
    n = (depth - 2) // 6
    b = _Builder()
    x = b.conv("conv1", "input", 16, 3, relu=True)
    c = 16
    for stage, cout in enumerate((16, 32, 64), start=1):
        for i in range(n):
            stride = 2 if (stage > 1 and i == 0) else 1
            name = f"stage{stage}.block{i}"
            h = b.conv(f"{name}.conv1", x, cout, 3, stride=stride, relu=True)
            h = b.conv(f"{name}.conv2", h, cout, 3)
            sc = x
            if stride != 1 or cout != c:
                sc = b.add(f"{name}.shortcut", "shortcut_a", [x], stride=stride, out_channels=cout)
            s = b.add(f"{name}.sum", "add", [h, sc])
            x = b.add(f"{name}.relu", "relu", [s])
            c = cout
    x = b.add("pool", "gap", [x])
    b.add("fc", "fc", [x], out_channels=10)
    return tuple(b.layers)


def _build(arch_id: str) -> Arch:
    if arch_id == "sepnet-t8":
        return Arch(arch_id, (224, 224, 3), 1000, _sepnet_imagenet(4, 4, 512, 16), IMAGENET_LABELS,
                    description="SEP-Net, paper Table 8 (1.3M weights), ImageNet 224x224")
    if arch_id == "sepnet-t7":
        return Arch(arch_id, (224, 224, 3), 1000, _sepnet_imagenet(1, 4, 400, 4), IMAGENET_LABELS,
                    description="SEP-Net, paper Table 7 (1.7M weights), ImageNet 224x224")
    if arch_id == "sepnet-cifar":
        return Arch(arch_id, (32, 32, 3), 10, _sepnet_cifar(), CIFAR10_LABELS,
                    description="SEP-Net for CIFAR-10 32x32 (seprt design, 0.23M weights)")
    if arch_id.startswith("resnet") and arch_id[6:] in ("20", "32", "44", "56"):
        d = int(arch_id[6:])
        return Arch(arch_id, (32, 32, 3), 10, _resnet_cifar(d), CIFAR10_LABELS,
                    description=f"ResNet-{d} for CIFAR-10 (He et al. 2016, option-A shortcuts)")
    raise KeyError(arch_id)


ARCH_IDS = ("sepnet-t8", "sepnet-t7", "sepnet-cifar", "resnet20", "resnet32", "resnet44", "resnet56")


def get(arch_id: str) -> Arch:
    """The architecture with this id; ValueError listing the known ids otherwise."""
    try:
        return _build(arch_id)
    except KeyError:
        raise ValueError(f"unknown architecture {arch_id!r}; known: {', '.join(ARCH_IDS)}") from None
