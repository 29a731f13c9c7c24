"""PyTorch modules built from the plain-data architectures in `seprt.arch`.

`build(arch_id)` interprets the layer list generically: every ``conv`` layer
becomes a `ConvBN` (conv without bias, then BatchNorm), every ``fc`` an
`nn.Linear`; the remaining ops are parameter-free and run in `forward`.
Modules live in ``model.layers`` (an `nn.ModuleDict`) keyed by the layer name
with ``.`` replaced by ``__`` (see `key`).

Each `ConvBN` has one of three weight modes:

* ``"real"``: a normal float weight ``weight``.
* ``"pattern"``: a frozen ±1 buffer ``pattern`` = sign(W) (sign(0) = +1) and a
  learnable per-output-filter scale ``alpha`` (shape ``[out_channels]``)
  initialised to mean|W| over the filter (c x k x k). The effective weight is
  ``alpha * pattern``: the optimum of the paper's Eq. 1.
* ``"ste"``: binary from the start. ``weight`` is a latent float weight,
  the forward pass uses ``alpha * sign(weight)`` with a straight-through
  estimator for sign; ``alpha`` is learned.

Converters need only: `conv_layers`, `ConvBN.export` (or
`ConvBN.effective_weight` + `ConvBN.bn_params`) and `fc_layers`.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from seprt import arch as arch_mod
from seprt import variants

MODES = ("real", "pattern", "ste")
BINARIZE_MODES = variants.BINARIZE_MODES


def key(layer_name: str) -> str:
    """ModuleDict key of a layer: its name with "." replaced by "__"."""
    return layer_name.replace(".", "__")


def sign_pm1(w: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1: entries in {+1, -1}, same dtype as `w`."""
    return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))


def filter_alpha(w: torch.Tensor) -> torch.Tensor:
    """Optimal per-filter scale of Eq. 1: mean |W| over (c, k, k) of each
    output filter. `w` has shape [out, c, k, k]; result shape [out]."""
    return w.abs().flatten(1).mean(1)


class ConvBN(nn.Module):
    """conv (no bias) + BatchNorm2d, with a switchable weight mode."""

    def __init__(self, layer: arch_mod.Layer, in_channels: int):
        super().__init__()
        self.layer = layer
        self.name = layer.name
        self.role = layer.role
        self.in_channels = in_channels
        self.out_channels = layer.out_channels
        self.kernel = layer.kernel
        self.stride = layer.stride
        self.pad = layer.pad
        self.groups = layer.groups
        self.mode = "real"
        shape = (layer.out_channels, in_channels // layer.groups, layer.kernel, layer.kernel)
        self.weight = nn.Parameter(torch.empty(shape))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.bn = nn.BatchNorm2d(layer.out_channels)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.out_channels, self.in_channels // self.groups, self.kernel, self.kernel)

    def effective_weight(self) -> torch.Tensor:
        """The weight the conv actually uses (alpha * pattern when binarized)."""
        if self.mode == "real":
            return self.weight
        if self.mode == "pattern":
            return self.alpha.view(-1, 1, 1, 1) * self.pattern
        w = self.weight
        b = w + (sign_pm1(w) - w).detach()          # straight-through sign
        return self.alpha.view(-1, 1, 1, 1) * b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.effective_weight(), None, self.stride, self.pad, 1, self.groups)
        return self.bn(y)

    # -- mode switching -------------------------------------------------
    def to_pattern(self) -> None:
        """real/ste -> pattern. From real: pattern = sign(W), alpha = mean|W|.
        From ste: pattern = sign(latent W), alpha keeps its learned value."""
        if self.mode == "pattern":
            return
        w = self.weight.detach()
        alpha = self.alpha.detach().clone() if self.mode == "ste" else filter_alpha(w)
        del self.weight
        if self.mode == "ste":
            del self.alpha
        self.register_buffer("pattern", sign_pm1(w).clone())
        self.alpha = nn.Parameter(alpha)
        self.mode = "pattern"

    def to_ste(self) -> None:
        """real -> ste: alpha initialised to mean|W| of the current weight."""
        if self.mode != "real":
            raise ValueError(f"{self.name}: to_ste needs a real conv, it is {self.mode}")
        self.alpha = nn.Parameter(filter_alpha(self.weight.detach()))
        self.mode = "ste"

    def set_mode_empty(self, mode: str) -> None:
        """Switch to `mode` with placeholder tensors of the right shape (for
        loading a state_dict into a freshly built model)."""
        if mode == self.mode:
            return
        if self.mode != "real":
            raise ValueError(f"{self.name}: can only leave real mode, it is {self.mode}")
        if mode == "pattern":
            self.to_pattern()
        elif mode == "ste":
            self.to_ste()
        else:
            raise ValueError(f"unknown conv mode {mode!r}")

    # -- export for converters --------------------------------------------
    def bn_params(self) -> dict[str, torch.Tensor | float]:
        """BatchNorm parameters: gamma, beta, running mean/var, eps."""
        bn = self.bn
        return {"gamma": bn.weight.detach().clone(), "beta": bn.bias.detach().clone(),
                "mean": bn.running_mean.detach().clone(), "var": bn.running_var.detach().clone(),
                "eps": float(bn.eps)}

    def export(self) -> dict:
        """Everything a converter needs for this conv layer, detached:
        {"name", "mode": "real"|"pattern", "kernel", "stride", "pad", "groups",
        "role", "weight" (real) or "pattern" (±1 float) + "alpha" [out],
        "bn": bn_params()}. An "ste" conv is exported as its pattern form."""
        d = {"name": self.name, "kernel": self.kernel, "stride": self.stride, "pad": self.pad,
             "groups": self.groups, "role": self.role, "bn": self.bn_params()}
        if self.mode == "real":
            d.update(mode="real", weight=self.weight.detach().clone())
        elif self.mode == "pattern":
            d.update(mode="pattern", pattern=self.pattern.detach().clone(), alpha=self.alpha.detach().clone())
        else:
            d.update(mode="pattern", pattern=sign_pm1(self.weight.detach()), alpha=self.alpha.detach().clone())
        return d

    def extra_repr(self) -> str:
        return (f"{self.in_channels}->{self.out_channels}, k={self.kernel}, s={self.stride}, "
                f"p={self.pad}, g={self.groups}, role={self.role}, mode={self.mode}")


class Net(nn.Module):
    """A network interpreting an `Arch` layer list; input NCHW float."""

    def __init__(self, arch: arch_mod.Arch):
        super().__init__()
        self.arch = arch
        self.arch_id = arch.id
        shapes = arch.shapes()
        self.layers = nn.ModuleDict()
        for l in arch.layers:
            cin = shapes[l.inputs[0]][-1]
            if l.op == "conv":
                self.layers[key(l.name)] = ConvBN(l, cin)
            elif l.op == "fc":
                self.layers[key(l.name)] = nn.Linear(cin, l.out_channels)

    def forward(self, x: torch.Tensor, return_embed: bool = False):
        """Logits, or (logits, embed) with embed = the pooled features."""
        vals: dict[str, torch.Tensor] = {"input": x}
        # free intermediate values once no later layer needs them
        last_use = {}
        for i, l in enumerate(self.arch.layers):
            for n in l.inputs:
                last_use[n] = i
        embed_name = self.arch.embed
        for i, l in enumerate(self.arch.layers):
            ins = [vals[n] for n in l.inputs]
            a = ins[0]
            op = l.op
            if op == "conv" or op == "fc":
                y = self.layers[key(l.name)](a)
            elif op == "relu":
                y = F.relu(a)
            elif op == "add":
                y = a + ins[1]
            elif op == "maxpool":
                y = F.max_pool2d(a, l.kernel, l.stride, l.pad)
            elif op == "avgpool":
                y = F.avg_pool2d(a, l.kernel, l.stride, l.pad, count_include_pad=False)
            elif op == "gap":
                y = a.mean(dim=(2, 3))
            elif op == "shortcut_a":
                y = a[:, :, ::l.stride, ::l.stride]
                extra = l.out_channels - a.shape[1]
                if extra:
                    y = F.pad(y, (0, 0, 0, 0, extra // 2, extra - extra // 2))
            else:
                raise ValueError(f"{l.name}: unknown op {op!r}")
            vals[l.name] = y
            for n in l.inputs:
                if last_use.get(n) == i and n != embed_name:
                    vals.pop(n, None)
        out = vals[self.arch.output]
        if return_embed:
            return out, vals[embed_name]
        return out

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled feature vector feeding the classifier."""
        return self.forward(x, return_embed=True)[1]


def build(arch_id: str, conv_modes: dict[str, str] | None = None) -> Net:
    """The network for `arch_id` (ValueError for an unknown id). `conv_modes`
    maps layer names to "pattern"/"ste" for convs that should start in that
    mode with placeholder weights (used when loading checkpoints)."""
    net = Net(arch_mod.get(arch_id))
    for name, mode in (conv_modes or {}).items():
        m = net.layers[key(name)] if key(name) in net.layers else None
        if not isinstance(m, ConvBN):
            raise ValueError(f"{arch_id}: no conv layer named {name!r}")
        m.set_mode_empty(mode)
    return net


def unwrap(model: nn.Module) -> Net:
    """The `Net` inside a DistributedDataParallel wrapper (or itself)."""
    return model.module if hasattr(model, "module") and isinstance(model.module, Net) else model


def conv_layers(model: nn.Module) -> Iterator[tuple[str, ConvBN]]:
    """(layer name with dots, ConvBN) for every conv, in layer-list order."""
    net = unwrap(model)
    for l in net.arch.layers:
        if l.op == "conv":
            yield l.name, net.layers[key(l.name)]


def fc_layers(model: nn.Module) -> Iterator[tuple[str, nn.Linear]]:
    """(layer name, nn.Linear) for every fc layer; weight [out, in] + bias."""
    net = unwrap(model)
    for l in net.arch.layers:
        if l.op == "fc":
            yield l.name, net.layers[key(l.name)]


def selected_for_binarize(conv: ConvBN, mode: str) -> bool:
    """Whether `binarize(model, mode)` turns this conv into a pattern."""
    return variants.binarized_by(conv.layer, mode)


def binarize(model: nn.Module, mode: str) -> list[str]:
    """Switch the convs chosen by `mode` ("all": every conv with kernel > 1;
    "inner": the same except the stem conv that reads the image; "prb": only
    role == "pattern") to pattern mode from their current weights
    (real: alpha = mean|W|; ste: learned alpha kept). Returns their names."""
    done = []
    for name, conv in conv_layers(model):
        if selected_for_binarize(conv, mode):
            conv.to_pattern()
            done.append(name)
    return done


def set_ste(model: nn.Module, mode: str = "all") -> list[str]:
    """Put the convs chosen by `mode` into "ste" mode (binary from start)."""
    done = []
    for name, conv in conv_layers(model):
        if selected_for_binarize(conv, mode):
            conv.to_ste()
            done.append(name)
    return done


def finalize_ste(model: nn.Module) -> list[str]:
    """ste convs -> pattern convs (exact: same effective weights)."""
    done = []
    for name, conv in conv_layers(model):
        if conv.mode == "ste":
            conv.to_pattern()
            done.append(name)
    return done


def conv_modes(model: nn.Module) -> dict[str, str]:
    """{layer name: mode} for every conv not in real mode."""
    return {n: c.mode for n, c in conv_layers(model) if c.mode != "real"}


def quantization_error(model: nn.Module) -> dict[str, dict[str, float]]:
    """The paper's Table 1 statistic for every real conv, grouped by kernel
    size: mean over filters of ||W - alpha B||_F^2 / (c k k) with B = sign(W),
    alpha = mean|W| (1x1 filters as if they were binarized too). Returns
    {"1x1": {"error": e, "filters": n, "mean_sq_weight": m}, "3x3": ...};
    mean_sq_weight (mean of W^2) is given for scale, since the error alone
    depends on the weights' magnitude."""
    acc: dict[int, list[float]] = {}
    for _, conv in conv_layers(model):
        if conv.mode != "real":
            continue
        w = conv.weight.detach().double().flatten(1)
        alpha = w.abs().mean(1, keepdim=True)
        err = ((w - alpha * sign_pm1(w)) ** 2).mean(1)
        a = acc.setdefault(conv.kernel, [0.0, 0, 0.0])
        a[0] += float(err.sum())
        a[1] += w.shape[0]
        a[2] += float((w ** 2).mean(1).sum())
    return {f"{k}x{k}": {"error": s / n, "filters": n, "mean_sq_weight": m / n}
            for k, (s, n, m) in sorted(acc.items())}


def count_weights(model: nn.Module) -> int:
    """Conv and FC weights (no biases, BN or alpha): comparable to Arch.params()."""
    n = 0
    for _, conv in conv_layers(model):
        n += conv.out_channels * (conv.in_channels // conv.groups) * conv.kernel ** 2
    for _, fc in fc_layers(model):
        n += fc.weight.numel()
    return n
