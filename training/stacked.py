"""Stacked low-dimensional binary conv filters (Lan & Lan 2020) for training.

`StackedConv2d` replaces a k x k `nn.Conv2d` of any module (the BN after it
stays the module's own). Its weight is

    W[o, :, :, s*d:(s+1)*d] = alpha[o] * sign(bank)[argmax_j sel[o, s, j]]

with full-precision proxies `bank` (m, d, k, k) and `sel` (K, S, m), S = Cg/d:
sign with a straight-through gradient (clipped to |bank| <= 1), argmax one-hot
with a softmax straight-through gradient. The forward pass is the
split-transform-merge form: convolve every d-channel input slice with the m
(binarized) bank filters once (one grouped conv), then each output channel is
alpha times the sum of its selected bank responses (a one-hot contraction).
`form="expand"` builds the same effective weight and runs one plain conv
(identical values and gradients; faster on CPU when m*Cg + K*S > K*Cg).

    >>> import torch
    >>> from training import models
    >>> net = models.resnet20()
    >>> dm = stack_modules(net, d=4, m=16, iters=2)
    >>> dm["conv1"], dm["stage1.block0.conv1"]
    ((3, 16), (4, 16))
    >>> net(torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 10])

Fine-tuning with distillation from the full model:
    python -m training.stacked --ckpt models/resnet20-full.pt --d 4 --m 64 --epochs 3 -o OUT.pt
"""
from __future__ import annotations

import argparse
import copy
import fnmatch
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from seprt import stacked as sk
from seprt.ops.wfmt_stack import index_bits

from . import models, pattern, spec as spec_mod

FORMAT = "seprt-stacked-checkpoint"
VERSION = 3          # 3: each selection stored as its argmax, <conv>.sel_index u8 (K, S), not the (K, S, m) proxy;
                     # 2: any module (SPEC + module names); 1: a built-in arch with layer-list keys


def ste_sign(w: torch.Tensor) -> torch.Tensor:
    """sign (sign(0) = +1) forward; gradient passes where |w| <= 1."""
    clipped = w.clamp(-1, 1)
    return clipped + (pattern.sign_pm1(w) - clipped).detach()


def ste_onehot(logits: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """one-hot(argmax) over the last axis forward; softmax(logits / tau) gradient."""
    soft = torch.softmax(logits / tau, -1)
    hard = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
    return soft + (hard - soft).detach()


def _take_conv(mod: nn.Module, conv: nn.Conv2d, d: int, m: int) -> int:
    """Copy conv's geometry onto a stacked module (in/out channels, kernel,
    stride, padding, groups, d, m, S = Cg/d, alpha, bias) after checking it
    can be stacked; returns k."""
    mod.in_channels, mod.out_channels = conv.in_channels, conv.out_channels
    mod.kernel_size, mod.stride, mod.padding = tuple(conv.kernel_size), tuple(conv.stride), tuple(conv.padding)
    mod.groups = conv.groups
    cg, k = conv.in_channels // conv.groups, conv.kernel_size[0]
    if mod.kernel_size != (k, k) or tuple(conv.dilation) != (1, 1) or conv.padding_mode != "zeros" or \
            isinstance(conv.padding, str):
        raise ValueError(f"stacked filters need a square, undilated, zero-padded conv, not {conv}")
    if cg % d or not 1 <= m <= 256:
        raise ValueError(f"{conv}: d={d} must divide Cg={cg}, m={m} be 1..256")
    mod.d, mod.m, mod.s = d, m, cg // d
    mod.alpha = nn.Parameter(torch.ones(conv.out_channels))
    mod.bias = nn.Parameter(conv.bias.detach().clone()) if conv.bias is not None else None
    return k


class StackedConv2d(nn.Module):
    """A k x k conv of stacked binary filters: drop-in for the nn.Conv2d it
    replaces (same stride, padding, groups, bias). For the converter it is a
    torch.fx leaf (`fx_leaf`) with the conv's attributes, ``weight`` (the
    effective weight) and `stack_export`."""

    fx_leaf = True
    dilation, padding_mode = (1, 1), "zeros"

    def __init__(self, conv: nn.Conv2d, d: int, m: int, form: str = "stm"):
        super().__init__()
        k = _take_conv(self, conv, d, m)
        self.form = form
        self.bank = nn.Parameter(torch.randn(m, d, k, k) * 0.1)
        self.sel = nn.Parameter(torch.randn(conv.out_channels, self.s, m) * 0.1)

    @property
    def kernel(self) -> int:
        return self.kernel_size[0]

    def binary(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(±1 bank (m, d, k, k), one-hot selection (K, S, m)), with STE gradients."""
        return ste_sign(self.bank), ste_onehot(self.sel)

    def effective_weight(self) -> torch.Tensor:
        """alpha * expanded ±1 weight, (K, Cg, k, k)."""
        b, p = self.binary()
        k = self.kernel
        w = torch.einsum("osj,jdyx->osdyx", p, b).reshape(self.out_channels, self.s * self.d, k, k)
        return self.alpha.view(-1, 1, 1, 1) * w

    @property
    def weight(self) -> torch.Tensor:
        return self.effective_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.form == "expand":
            return F.conv2d(x, self.effective_weight(), self.bias, self.stride, self.padding, 1, self.groups)
        b, p = self.binary()
        ns = self.groups * self.s                               # d-channel slices of the input
        r = F.conv2d(x, b.repeat(ns, 1, 1, 1), None, self.stride, self.padding, 1, ns)   # (N, ns*m, Ho, Wo)
        n, _, ho, wo = r.shape
        kg = self.out_channels // self.groups
        r = r.view(n, self.groups, self.s * self.m, ho, wo)
        sel = p.reshape(self.groups, kg, self.s * self.m)
        y = torch.einsum("ngjhw,gkj->ngkhw", r, sel).reshape(n, self.out_channels, ho, wo)
        y = y * self.alpha.view(1, -1, 1, 1)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)

    @torch.no_grad()
    def init_from(self, conv: nn.Conv2d, iters: int = 20) -> None:
        """k-means init from a real conv's weight (seprt.stacked.cluster_slices).
        bank proxy = the centre's sign scaled by the mean |w| of the slices it
        took (so entries that are near ties flip easily)."""
        w = conv.weight.detach().permute(0, 2, 3, 1).numpy().astype(np.float32)   # OHWI
        bank, index, alpha = sk.cluster_slices(w, self.d, self.m, iters)
        v = sk.slice_vectors(w, self.d).reshape(-1, bank[0].size)
        idx = index.reshape(-1)
        means = np.zeros((self.m, v.shape[1]), np.float32)
        np.add.at(means, idx, v)
        cnt = np.maximum(np.bincount(idx, minlength=self.m), 1)[:, None]
        means = means / cnt
        scale = np.abs(means).mean() + 1e-12
        proxy = bank.reshape(self.m, -1) * np.maximum(np.abs(means) / scale, 0.05)     # sign = the centre's
        k = self.kernel
        self.bank.copy_(torch.from_numpy(proxy.reshape(self.m, k, k, self.d)).permute(0, 3, 1, 2))
        corr = torch.from_numpy((v @ bank.reshape(self.m, -1).T.astype(np.float32)))
        corr = corr / corr.abs().amax(1, keepdim=True).clamp_min(1e-12)
        sel = corr + 2.0 * F.one_hot(torch.from_numpy(idx.astype(np.int64)), self.m).float()
        self.sel.copy_(sel.view(self.out_channels, self.s, self.m))
        self.alpha.copy_(torch.from_numpy(alpha))

    @torch.no_grad()
    def stack_export(self) -> dict:
        """{"bank" (m, k, k, d) ±1 int8 OHWI, "index" (K, S) uint8, "alpha" (K,)
        float32} -- exactly what the forward pass uses."""
        return {"bank": pattern.sign_pm1(self.bank).permute(0, 2, 3, 1).numpy().astype(np.int8),
                "index": self.sel.argmax(-1).numpy().astype(np.uint8),
                "alpha": self.alpha.detach().numpy().astype(np.float32).copy()}

    def extra_repr(self) -> str:
        return (f"{self.in_channels}->{self.out_channels}, k={self.kernel}, s={self.stride}, p={self.padding}, "
                f"g={self.groups}, d={self.d}, m={self.m}, S={self.s}, form={self.form}")


class LatentStackedConv2d(nn.Module):
    """Stacked binary filters trained through a latent full-precision weight
    (method "latent"; the pattern STE of training/pattern.py carried over).

    State: ``weight`` (K, Cg, k, k) latent, ``alpha`` (K,), ``bias``; buffer
    ``bank`` (m, d, k, k) ±1. Forward: every d-channel slice of the latent
    weight picks the bank filter it correlates with best (the k-means
    assignment; ||v - a*B_j||^2 is smallest there, |B_j|^2 being the same for
    all j), W_eff = alpha * expanded ±1 weight, and the gradient of W_eff goes
    straight through to ``weight``. In training mode each forward pass first
    takes one k-means step for the bank (B_j = sign of the sum of the slices
    that picked it; a bank filter nobody picked stays). So selections and bank
    follow the latent weight instead of sitting behind a softmax margin and an
    STE window (the "proxies" method's failure: docs/results.md).
    `to_stacked()` gives the StackedConv2d with the same forward (eval).
    """

    fx_leaf = True
    dilation, padding_mode = (1, 1), "zeros"

    def __init__(self, conv: nn.Conv2d, d: int, m: int):
        super().__init__()
        k = _take_conv(self, conv, d, m)
        self.weight = nn.Parameter(conv.weight.detach().clone())
        self.register_buffer("bank", torch.ones(m, d, k, k))

    @property
    def kernel(self) -> int:
        return self.kernel_size[0]

    def slices(self) -> torch.Tensor:
        """(K*S, d*k*k) the latent weight's d-channel slices, in bank order (c, ky, kx)."""
        k = self.kernel
        return self.weight.detach().reshape(self.out_channels, self.s, self.d * k * k).reshape(-1, self.d * k * k)

    @torch.no_grad()
    def assign(self) -> torch.Tensor:
        """(K, S) int64: the bank filter each slice picks."""
        return (self.slices() @ self.bank.reshape(self.m, -1).T).argmax(1).view(self.out_channels, self.s)

    @torch.no_grad()
    def bank_step(self) -> None:
        """One k-means step of the bank from the current assignment."""
        v, a = self.slices(), self.assign().reshape(-1)
        acc = torch.zeros(self.m, v.shape[1], dtype=v.dtype).index_add_(0, a, v)
        used = torch.bincount(a, minlength=self.m) > 0
        new = pattern.sign_pm1(acc).view_as(self.bank)
        self.bank.copy_(torch.where(used.view(-1, 1, 1, 1), new, self.bank))

    def expanded(self) -> torch.Tensor:
        """(K, Cg, k, k) ±1: each slice's bank filter (no gradient)."""
        k = self.kernel
        return self.bank[self.assign()].reshape(self.out_channels, self.s * self.d, k, k)

    def effective_weight(self) -> torch.Tensor:
        """alpha * expanded ±1, gradient straight through to the latent weight."""
        b = self.expanded() + (self.weight - self.weight.detach())
        return self.alpha.view(-1, 1, 1, 1) * b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.bank_step()
        return F.conv2d(x, self.effective_weight(), self.bias, self.stride, self.padding, 1, self.groups)

    @torch.no_grad()
    def init_from(self, conv: nn.Conv2d, iters: int = 20) -> None:
        """bank = the k-means centres of the conv's slices (seprt.stacked.cluster_slices), alpha its scales."""
        w = conv.weight.detach().permute(0, 2, 3, 1).numpy().astype(np.float32)   # OHWI
        bank, _, alpha = sk.cluster_slices(w, self.d, self.m, iters)
        self.weight.copy_(conv.weight)
        self.bank.copy_(torch.from_numpy(bank.astype(np.float32)).permute(0, 3, 1, 2))
        self.alpha.copy_(torch.from_numpy(alpha))

    @torch.no_grad()
    def to_stacked(self) -> "StackedConv2d":
        """The StackedConv2d computing what this module computes in eval mode
        (bank proxies ±1, selection logits one-hot)."""
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
                         groups=self.groups, bias=self.bias is not None)
        out = StackedConv2d(conv, self.d, self.m, form="expand")    # stm: same values, ~10x slower on CPU
        out.bank.copy_(self.bank)
        out.sel.copy_(F.one_hot(self.assign(), self.m).float())
        out.alpha.copy_(self.alpha)
        if self.bias is not None:
            out.bias.copy_(self.bias)
        return out

    @classmethod
    @torch.no_grad()
    def from_stacked(cls, st: "StackedConv2d") -> "LatentStackedConv2d":
        """The inverse of to_stacked(): bank = sign of st's bank proxy, alpha and
        bias st's, latent weight |alpha| * expanded ±1, so every slice picks the
        filter it had and the forward pass is st's (eval).
        For resuming a latent run from its (StackedConv2d) checkpoint."""
        conv = nn.Conv2d(st.in_channels, st.out_channels, st.kernel_size, st.stride, st.padding,
                         groups=st.groups, bias=st.bias is not None)
        conv.weight.copy_(st.effective_weight() * st.alpha.sign().view(-1, 1, 1, 1))   # |alpha| * ±1: an
        # alpha < 0 (training can get there) must not make its slices pick the negated filter
        if st.bias is not None:
            conv.bias.copy_(st.bias)
        out = cls(conv, st.d, st.m)
        out.bank.copy_(pattern.sign_pm1(st.bank))
        out.alpha.copy_(st.alpha)
        return out

    @torch.no_grad()
    def shrink_bank(self, m: int) -> None:
        """Keep the m bank filters the most slices pick (ties: the lower row),
        in their order; a slice whose filter is dropped picks its best
        remaining one from the next forward pass on."""
        if m >= self.m:
            return
        used = torch.bincount(self.assign().reshape(-1), minlength=self.m)
        keep = torch.argsort(-used, stable=True)[:m].sort().values
        self.bank = self.bank[keep].clone()
        self.m = m

    def extra_repr(self) -> str:
        return (f"{self.in_channels}->{self.out_channels}, k={self.kernel}, s={self.stride}, p={self.padding}, "
                f"g={self.groups}, d={self.d}, m={self.m}, S={self.s}, latent")


def to_stacked(net: nn.Module) -> None:
    """Every LatentStackedConv2d of `net` -> its StackedConv2d (for checkpoints and converters)."""
    for name, mod in list(net.named_modules()):
        if isinstance(mod, LatentStackedConv2d):
            pattern._set_submodule(net, name, mod.to_stacked())


def to_latent(net: nn.Module) -> None:
    """Every StackedConv2d of `net` -> LatentStackedConv2d.from_stacked (resuming the latent method)."""
    for name, mod in list(net.named_modules()):
        if isinstance(mod, StackedConv2d):
            pattern._set_submodule(net, name, LatentStackedConv2d.from_stacked(mod))


METHODS = ("latent", "proxies")


def stack_modules(model: nn.Module, d: int, m: int, init: bool = True, iters: int = 20, form: str = "stm",
                  dm: dict | None = None, which="all", method: str = "proxies") -> dict[str, tuple[int, int]]:
    """Replace the k x k convs `which` chooses (`pattern.select`; default every
    one, the stem included) by StackedConv2d (method "proxies") or
    LatentStackedConv2d ("latent"), (d, m) per conv from
    seprt.stacked.layer_dm (or from `dm`); with `init`, k-means-initialised
    from the conv's current weights. Returns {module name: (d, m)}."""
    if method not in METHODS:
        raise ValueError(f"unknown stacked method {method!r}; use one of {', '.join(METHODS)}")
    out = {}
    names = list(dm) if dm else pattern.select(model, which)
    for name in names:
        conv = model.get_submodule(name)
        cg = conv.in_channels // conv.groups
        dd, mm = dm[name] if dm else sk.layer_dm(cg, conv.out_channels, d, m)
        new = LatentStackedConv2d(conv, dd, mm) if method == "latent" else StackedConv2d(conv, dd, mm, form)
        if init:
            new.init_from(conv, iters)
        pattern._set_submodule(model, name, new)
        out[name] = (dd, mm)
    return out


def parse_at(items, flag: str = "--m-at", hi: int = sk.MAX_BANK) -> list[tuple[str, int]]:
    """["PATTERN=N", ...] (the CLI's --m-at / --d-at) -> [(pattern, N)]; ValueError if malformed."""
    out = []
    for it in items or ():
        pat, eq, n = it.rpartition("=")
        if not eq or not pat or not n.strip().isdigit() or not 1 <= int(n) <= hi:
            raise ValueError(f"{flag} {it!r}: expected PATTERN=N, N in 1..{hi}")
        out.append((pat, int(n)))
    return out


def by_pattern(names, value: int, pairs=(), flag: str = "--m-at") -> dict[str, int]:
    """{conv name: value}, or the last of the (fnmatch pattern, value) pairs
    whose pattern matches the name. A pattern that matches none of `names`
    is a ValueError (a typo must not go unnoticed).

        >>> by_pattern(["conv1", "stage1.block0.conv1", "stage3.block0.conv1"], 112,
        ...            [("stage1.*", 32), ("stage3.*", 208)])
        {'conv1': 112, 'stage1.block0.conv1': 32, 'stage3.block0.conv1': 208}
    """
    out = {n: value for n in names}
    for pat, v in pairs:
        hit = fnmatch.filter(out, pat)
        if not hit:
            raise ValueError(f"{flag} {pat}={v}: the pattern matches none of the convs ({', '.join(out)})")
        out.update({n: v for n in hit})
    return out


def plan_dm(model: nn.Module, d: int, m: int, m_at=(), d_at=(), which="all") -> dict[str, tuple[int, int]]:
    """{conv name: (d, m)} for stack_modules: seprt.stacked.layer_dm of each
    k x k conv `which` chooses, its d and m from by_pattern (per-layer
    settings: [(fnmatch pattern, m)], [(pattern, d)])."""
    names = pattern.select(model, which)
    ms, ds = by_pattern(names, m, m_at, "--m-at"), by_pattern(names, d, d_at, "--d-at")
    out = {}
    for name in names:
        conv = model.get_submodule(name)
        out[name] = sk.layer_dm(conv.in_channels // conv.groups, conv.out_channels, ds[name], ms[name])
    return out


def kxk_bytes(net: nn.Module) -> dict:
    """The stacked convs' weight bytes as the converter writes them (`stack_packed`:
    bank rows of ceil(d*k*k/8) bytes, per slice a row of K indices at
    ceil(log2 m) bits; alpha and bias excluded, as in seprt.stacked.kxk_bytes),
    their float32 bytes and the ratio."""
    stored = floats = 0
    for mod in net.modules():
        if isinstance(mod, (StackedConv2d, LatentStackedConv2d)):
            k = mod.kernel
            stored += mod.m * -(-mod.d * k * k // 8) + mod.s * -(-mod.out_channels * index_bits(mod.m) // 8)
            floats += 4 * mod.out_channels * mod.s * mod.d * k * k
    return {"bytes": stored, "float32_bytes": floats, "ratio": floats / max(stored, 1)}


def set_form(net: nn.Module, form: str) -> None:
    for mod in net.modules():
        if isinstance(mod, StackedConv2d):
            mod.form = form


# ------------------------------------------------------------ checkpoints

def make_checkpoint(net: nn.Module, dm: dict, src: dict, val_top1=None, history=None, config=None) -> dict:
    """A stacked checkpoint of `net`, built as the module checkpoint `src` says
    (its SPEC, kwargs, labels, preprocessing). A selection proxy is stored
    as what the model uses of it, its argmax (`<conv>.sel_index`, u8 (K, S)):
    the float (K, S, m) proxy made `resnet56` d=4 m=128 a 12 MB file."""
    sd = {}
    for k, v in net.state_dict().items():
        if k.endswith(".sel"):
            sd[k[:-len("sel")] + "sel_index"] = v.detach().argmax(-1).to(torch.uint8)
        else:
            sd[k] = v.detach().clone()
    return {"format": FORMAT, "version": VERSION, "model": src["model"], "model_kwargs": dict(src["model_kwargs"]),
            "dm": {k: list(v) for k, v in dm.items()}, "state_dict": sd,
            "labels": list(src["labels"]), "preprocess": dict(src["preprocess"]),
            "val_top1": None if val_top1 is None else float(val_top1), "history": list(history or []),
            "train_config": dict(config or {})}


def _upgrade_v1(ck: dict) -> dict:
    """Version 1 (a built-in arch, layer-list keys layers.<name>.*) -> version 2."""
    names = models.zoo_name_map(ck["arch"])
    key = lambda layer: "layers." + layer.replace(".", "__") + "."
    rename = {}
    for layer, (mod, bn) in names.items():
        for leaf in ("weight", "bias", "bank", "sel", "alpha"):
            rename[key(layer) + leaf] = f"{mod}.{leaf}"
        if bn is not None:
            for leaf in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                rename[f"{key(layer)}bn.{leaf}"] = f"{bn}.{leaf}"
    out = {k: v for k, v in ck.items() if k != "arch"}
    out.update(version=VERSION, model=models.ARCH_TO_SPEC[ck["arch"]], model_kwargs={},
               dm={names[k][0]: v for k, v in ck["dm"].items()},
               state_dict={rename[k]: v for k, v in ck["state_dict"].items()})
    return out


def load_checkpoint(path: str) -> tuple[nn.Module, dict]:
    """(net in eval mode, checkpoint) of a stacked checkpoint; ValueError if it is not one."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise ValueError(f"{path}: not a stacked checkpoint ({FORMAT})")
    if "arch" in ck:
        ck = _upgrade_v1(ck)
    net = spec_mod.build(ck["model"], ck["model_kwargs"])
    dm = {k: tuple(v) for k, v in ck["dm"].items()}
    stack_modules(net, 0, 0, init=False, form="expand", dm=dm)
    sd = {}
    for k, v in ck["state_dict"].items():
        if k.endswith(".sel_index"):                   # version 3: the proxy as its one-hot
            name = k[:-len(".sel_index")]
            if name not in dm or v.dtype != torch.uint8 or (v.numel() and int(v.max()) >= dm[name][1]):
                raise ValueError(f"{path}: {k} is not a u8 selection of {name}'s {dm.get(name, (0, 0))[1]} filters")
            sd[name + ".sel"] = F.one_hot(v.long(), dm[name][1]).float()
        else:
            sd[k] = v
    net.load_state_dict(sd, strict=True)
    net.eval()
    return net, ck


@torch.no_grad()
def expanded_checkpoint(path: str) -> dict:
    """The stacked checkpoint at `path` as a module checkpoint
    (training/modelckpt.py) of its plain model, each StackedConv2d an
    nn.Conv2d holding its effective weight alpha * expanded ±1 (K, Cg, k, k):
    the same function, for baselines of the same weights (`python -m
    converters tflite OUT --quant int8`). Stage "full" because no conv is a
    pattern conv; train_config["expanded_from"] says where it came from.

        ck = expanded_checkpoint("models/resnet20-stacked-d4m32.pt")
        modelckpt.save(ck, "runs/resnet20-stacked-d4m32-expanded.pt")
    """
    from . import modelckpt
    net, ck = load_checkpoint(path)
    plain = spec_mod.build(ck["model"], ck["model_kwargs"])
    sd = {k: v for k, v in net.state_dict().items() if not k.endswith((".bank", ".sel", ".alpha"))}
    for name, mod in net.named_modules():
        if isinstance(mod, StackedConv2d):
            sd[name + ".weight"] = mod.effective_weight()
    plain.load_state_dict(sd, strict=True)
    plain.eval()
    return modelckpt.make(plain, spec=ck["model"], model_kwargs=ck["model_kwargs"], labels=ck["labels"],
                          preprocess=ck["preprocess"], stage="full", val_top1=ck["val_top1"],
                          history=ck["history"], train_config={"expanded_from": os.path.basename(path),
                                                               "dm": ck["dm"]})


# ------------------------------------------------------------ fine-tuning

def export(net: nn.Module, batches=None, bn_batches: int = 0) -> nn.Module:
    """A copy of `net` in eval mode with every LatentStackedConv2d a
    StackedConv2d and, with bn_batches > 0, every BN's running statistics
    recomputed over that many of `batches` (pattern.reestimate_bn; the frozen
    copy's bank no longer moves). The latent method changes the bank and the
    selections every step, so the running statistics gathered during training
    lag the final weights: `resnet20` d=4 m=32 after 6 epochs, 53.68 % as
    trained, 71.12 % with 100 batches (docs/results.md)."""
    out = copy.deepcopy(net)
    to_stacked(out)
    if bn_batches > 0:
        pattern.reestimate_bn(out, batches, bn_batches)
    return out.eval()


def finetune(net: nn.Module, teacher: nn.Module | None, train_b, val_b, epochs: float, lr: float,
             wd: float = 5e-4, kd_t: float = 4.0, kd_alpha: float = 0.9, log=print, max_steps: int = 0,
             on_epoch=None, bn_batches: int = 0, start: tuple[int, int] = (0, 0)) -> list:
    """SGD (nesterov, cosine lr) with CE + distillation from `teacher`;
    alpha/BN/proxies all trained, no weight decay on the proxies.
    After each epoch: `export(net)` (StackedConv2d modules, BN statistics
    re-estimated over `bn_batches` training batches when > 0) is validated
    and handed to `on_epoch(history, exported)`.
    `start` = (step, epoch) goes on with a schedule from there (its records
    numbered on; the momentum starts again from zero).
    Returns per-epoch records (validation top-1 after each epoch)."""
    from .train import evaluate
    proxies = [p for n, p in net.named_parameters() if n.endswith((".bank", ".sel")) and p.requires_grad]
    ids = {id(p) for p in proxies}
    rest = [p for n, p in net.named_parameters() if id(p) not in ids and p.requires_grad]
    opt = torch.optim.SGD([{"params": proxies, "weight_decay": 0.0}, {"params": rest, "weight_decay": wd}],
                          lr=lr, momentum=0.9, nesterov=True)
    steps_per_epoch = len(train_b)
    total = max(1, int(epochs * steps_per_epoch)) if not max_steps else max_steps
    history, (step, ep) = [], start
    if teacher is not None:
        teacher.eval()
    while step < total:
        t0 = time.time()
        seen = correct = 0
        for s, x, y in pattern.cosine_epoch(net, train_b, opt, lr, step, total, ep):
            out = net(x)
            loss = F.cross_entropy(out, y)
            if teacher is not None:
                with torch.no_grad():
                    tl = teacher(x)
                loss = (1 - kd_alpha) * loss + kd_alpha * pattern.distillation_loss(out, tl, kd_t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step = s + 1
            seen += len(y)
            correct += int((out.argmax(1) == y).sum())
        ep += 1
        done = export(net, train_b, bn_batches)
        ev = evaluate(done, val_b) if val_b is not None else {"top1": float("nan")}
        rec = {"epoch": ep, "steps": step, "train_top1": correct / max(seen, 1), "val_top1": ev["top1"],
               "seconds": round(time.time() - t0, 1)}
        history.append(rec)
        if on_epoch is not None:
            on_epoch(history, done)
        log(f"epoch {ep}: step {step}/{total} train top1 {rec['train_top1']:.4f} | validation top1 "
            f"{rec['val_top1']:.4f} | {rec['seconds']:.0f} s")
    return history


def _write(ck: dict, path: str) -> None:
    torch.save(ck, path + ".tmp")
    os.replace(path + ".tmp", path)


def _load_input(path: str, out: str, flag: str) -> tuple[nn.Module, dict]:
    """load_checkpoint(path) for a command writing `out`, which must not be it."""
    if os.path.abspath(out) == os.path.abspath(path):
        raise SystemExit(f"error: -o must differ from {flag} (the input is kept)")
    try:
        return load_checkpoint(path)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None


def _reestimate_bn_cmd(args) -> int:
    """--reestimate-bn: a stacked checkpoint with its BN statistics recomputed."""
    from . import data as data_mod
    from .train import evaluate
    net, ck = _load_input(args.ckpt, args.out, "--ckpt")
    ds = data_mod.load(args.data or data_mod.DEFAULT_DATA, size=tuple(ck["preprocess"]["size"]),
                       labels=list(ck["labels"]), cache_dir=args.cache_dir or data_mod.DEFAULT_CACHE)
    mean, std = ck["preprocess"]["mean"], ck["preprocess"]["std"]
    train_b = data_mod.Batches(ds.split("train"), mean, std, args.batch_size, train=True, seed=0)
    val_b = data_mod.Batches(ds.split("val"), mean, std, 500, train=False)
    before = evaluate(net, val_b)["top1"]
    train_b.set_epoch(0)
    n = pattern.reestimate_bn(net, train_b, args.bn_batches)
    after = evaluate(net.eval(), val_b)["top1"]
    hist = list(ck["history"]) + [{"bn_reestimated_batches": n, "val_top1_before": before, "val_top1": after}]
    cfg = {**ck["train_config"], "bn_reestimated_batches": n}
    _write(make_checkpoint(net, {k: tuple(v) for k, v in ck["dm"].items()}, ck, after, hist, cfg), args.out)
    print(f"wrote {args.out}: BN statistics over {n} training batches; validation top1 {before:.4f} -> "
          f"{after:.4f}", flush=True)
    return 0


def parse_probe(item: str) -> tuple[str, int, int]:
    """"PATTERN=D,M" (the CLI's --probe) -> (pattern, d, m); ValueError if malformed."""
    pat, eq, dm = item.rpartition("=")
    d, comma, m = dm.partition(",")
    if not (eq and pat and comma and d.strip().isdigit() and m.strip().isdigit()) or int(d) < 1 or \
            not 1 <= int(m) <= sk.MAX_BANK:
        raise ValueError(f"--probe {item!r}: expected PATTERN=D,M (d >= 1, m in 1..{sk.MAX_BANK})")
    return pat, int(d), int(m)


@torch.no_grad()
def probe(src: dict, which: str, d: int, m: int, train_b, val_b, bn_batches: int = 20) -> dict:
    """What stacking only the convs `which` chooses costs before any training:
    a model of checkpoint `src` with those convs k-means-initialised at (d, m)
    (seprt.stacked.layer_dm per conv), BN statistics recomputed over
    `bn_batches` training batches, validated. For planning --m-at / --d-at:
    the layers whose accuracy falls most need the larger banks.
    Returns {"convs", "bytes" (their k x k weight bytes), "ratio", "top1"}."""
    from . import modelckpt
    from .train import evaluate
    net = modelckpt.build_model(src)
    dm = plan_dm(net, d, m, which=which)
    stack_modules(net, 0, 0, dm=dm, method="latent")
    kb = kxk_bytes(net)
    train_b.set_epoch(0)
    done = export(net, train_b, bn_batches)
    return {"convs": len(dm), "bytes": kb["bytes"], "ratio": kb["ratio"], "top1": evaluate(done, val_b)["top1"]}


def _resume(args, ck: dict) -> tuple[nn.Module, dict, list]:
    """(latent net, dm, its history) from --resume (train_config["resume"]
    names it), banks cut to --m when given; the checkpoint must be of
    --ckpt's model, -o must not be it. With --refine the net stays
    StackedConv2d with its banks and selections frozen (requires_grad off):
    only alpha, biases, BN and the layers that are not stacked train."""
    if args.method != "latent":
        raise SystemExit("error: --resume goes on with --method latent only")
    net, sck = _load_input(args.resume, args.out, "--resume")
    if sck["model"] != ck["model"] or sck["model_kwargs"] != ck["model_kwargs"]:
        raise SystemExit(f"error: {args.resume} is not a stacked model of {args.ckpt}'s model")
    dm = {k: tuple(v) for k, v in sck["dm"].items()}
    if args.refine:
        if args.m is not None or args.m_at:
            raise SystemExit("error: --refine keeps every bank: no --m / --m-at")
        for mod in net.modules():
            if isinstance(mod, StackedConv2d):
                mod.bank.requires_grad_(False)
                mod.sel.requires_grad_(False)
        return net, dm, list(sck["history"])
    to_latent(net)
    if args.d_at:
        raise SystemExit("error: --resume keeps each conv's d: no --d-at")
    if args.m is not None or args.m_at:           # a smaller bank: each conv keeps its most used filters
        try:
            want = by_pattern(dm, sk.MAX_BANK if args.m is None else args.m, parse_at(args.m_at))
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
        for name, (d, m) in dm.items():
            if m > want[name]:
                net.get_submodule(name).shrink_bank(want[name])
                dm[name] = (d, want[name])
    return net, dm, list(sck["history"])


def _continue(args) -> tuple[int, int]:
    """--continue: args take the resumed run's schedule (epochs, lr,
    bn_batches); returns (step, epoch) its last epoch reached."""
    if not args.resume or args.refine or args.m is not None or args.m_at:
        raise SystemExit("error: --continue goes on with a --resume run as it was: no --refine, --m or --m-at")
    _, sck = _load_input(args.resume, args.out, "--resume")
    cfg, last = sck.get("train_config") or {}, (sck.get("history") or [{}])[-1]
    if cfg.get("refine") or not {"epochs", "lr", "bn_batches", "batch_size"} <= cfg.keys() or "steps" not in last:
        raise SystemExit(f"error: {args.resume} has no cosine schedule to continue")
    if cfg["batch_size"] != args.batch_size:
        raise SystemExit(f"error: --continue needs the resumed run's --batch-size {cfg['batch_size']}")
    args.epochs, args.lr, args.bn_batches = cfg["epochs"], cfg["lr"], cfg["bn_batches"]
    return int(last["steps"]), int(last["epoch"])


def _init_checkpoint(args, ck: dict) -> dict:
    """The module checkpoint the k-means starts from: --init (the same model:
    a full one, or a pattern one's latent weights) or else --ckpt."""
    from . import modelckpt
    if not args.init:
        return ck
    try:
        ick = modelckpt.read(args.init)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if ick["model"] != ck["model"] or ick["model_kwargs"] != ck["model_kwargs"]:
        raise SystemExit(f"error: --init {args.init} is not a checkpoint of {args.ckpt}'s model")
    return ick


def _probe_cmd(args, ck: dict) -> int:
    """--probe: the cost of stacking each group of convs, untrained."""
    from . import data as data_mod, modelckpt
    try:
        specs = [parse_probe(x) for x in args.probe]
        src = _init_checkpoint(args, ck)
        net = modelckpt.build_model(src)
        for pat, _, _ in specs:                       # every pattern must name convs before any work
            pattern.select(net, pat, flag="--probe")
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    ds = data_mod.load(args.data or data_mod.DEFAULT_DATA, size=tuple(ck["preprocess"]["size"]),
                       labels=list(ck["labels"]), cache_dir=args.cache_dir or data_mod.DEFAULT_CACHE)
    mean, std = ck["preprocess"]["mean"], ck["preprocess"]["std"]
    train_b = data_mod.Batches(ds.split("train"), mean, std, args.batch_size, train=True, seed=0)
    val_b = data_mod.Batches(ds.split("val"), mean, std, 500, train=False)
    from .train import evaluate
    bn = args.bn_batches
    print(f"unstacked: validation top1 {evaluate(net.eval(), val_b)['top1']:.4f}", flush=True)
    for pat, d, m in specs:
        r = probe(src, pat, d, m, train_b, val_b, bn)
        print(f"{pat} d={d} m={m}: {r['convs']} convs, k x k {r['bytes']} bytes ({r['ratio']:.1f}x float32), "
              f"validation top1 {r['top1']:.4f} (untrained, BN over {bn} batches)", flush=True)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.stacked",
                                description="full checkpoint -> stacked binary filters, k-means init + KD fine-tune")
    p.add_argument("--ckpt", required=True, help="full (real) checkpoint: the teacher, and the init unless --init")
    p.add_argument("--d", type=int, default=4)
    p.add_argument("--m", type=int, default=None,
                   help="bank filters per conv (default 64; capped per conv by its slices); with --resume, "
                        "convs with more keep their M most used filters")
    p.add_argument("--m-at", metavar="PATTERN=M", action="append", default=[],
                   help="bank size M for the convs whose names match PATTERN (fnmatch, e.g. 'stage3.*=208'); "
                        "repeatable, the last match wins; the other convs get --m")
    p.add_argument("--d-at", metavar="PATTERN=D", action="append", default=[],
                   help="slice depth D for the convs whose names match PATTERN (as --m-at); the others get --d")
    p.add_argument("--epochs", type=float, default=3)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--method", choices=METHODS, default="latent",
                   help="latent (default): a latent real weight picks bank filters and drives the bank by k-means "
                        "steps, straight-through; proxies: sign/argmax of bank and selection proxies")
    p.add_argument("--form", choices=("stm", "expand"), default="expand",
                   help="expand (default): same values and gradients as stm, ~10x faster on CPU (measured)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default=None)
    p.add_argument("--cache-dir", default=None, help="decoded-image cache (default: training.data's)")
    p.add_argument("--train-limit", type=int, default=0, help="use only this many training images (smoke runs)")
    p.add_argument("--bn-batches", type=int, default=None,
                   help="after each epoch, BN statistics recomputed over this many training batches (default 100, "
                        "--probe 20; 0: off)")
    p.add_argument("--init", metavar="MODEL.pt", default=None,
                   help="start the k-means from this checkpoint of the same model (e.g. a pattern STE model's "
                        "latent weights) instead of --ckpt, which stays the teacher")
    p.add_argument("--resume", metavar="STACKED.pt", default=None,
                   help="go on training this stacked checkpoint (latent method; its d, m per conv) instead of "
                        "a k-means init; --ckpt stays the teacher and must be its full model")
    p.add_argument("--continue", dest="cont", action="store_true",
                   help="with --resume: go on with the resumed run's own cosine schedule (its --epochs, --lr and "
                        "--bn-batches) from the step its last epoch reached, instead of starting a new one")
    p.add_argument("--refine", action="store_true",
                   help="with --resume: freeze every bank and selection, fine-tune only alpha, biases, BN and "
                        "the convs that are not stacked (distilled; the paper's 'Refined' step)")
    p.add_argument("--reestimate-bn", action="store_true",
                   help="--ckpt is a stacked checkpoint: only recompute its BN statistics (--bn-batches) and "
                        "write it to -o")
    p.add_argument("--probe", metavar="PATTERN=D,M", action="append", default=[],
                   help="no training: for each, the validation top-1 with only the matching convs stacked at "
                        "(D, M) (k-means init from --init or --ckpt, BN recomputed over --bn-batches) and their "
                        "k x k bytes; repeatable")
    p.add_argument("-o", "--out", default=None, help="the stacked checkpoint to write (all but --probe)")
    args = p.parse_args(argv)
    if args.probe and (args.resume or args.reestimate_bn or args.refine or args.out):
        raise SystemExit("error: --probe trains and writes nothing: no --resume, --reestimate-bn, --refine or -o")
    if not args.probe and args.out is None:
        raise SystemExit("error: -o/--out is required")
    if args.bn_batches is None:
        args.bn_batches = 20 if args.probe else 100
    torch.set_num_threads(args.threads)
    from . import data as data_mod, modelckpt
    from .train import evaluate
    if args.reestimate_bn:
        return _reestimate_bn_cmd(args)
    if args.m is not None and not 1 <= args.m <= sk.MAX_BANK:
        raise SystemExit(f"error: --m {args.m}: a bank has 1..{sk.MAX_BANK} filters")
    if args.d < 1:
        raise SystemExit(f"error: --d {args.d}: a slice has at least one channel")
    try:
        ck = modelckpt.read(args.ckpt)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if ck["stage"] != "full":
        raise SystemExit(f"{args.ckpt}: needs a full (real) checkpoint, this one is {ck['stage']}")
    teacher = modelckpt.build_model(ck)
    t0 = time.time()
    if args.probe:
        return _probe_cmd(args, ck)
    if args.refine and not args.resume:
        raise SystemExit("error: --refine fine-tunes a stacked checkpoint: give it with --resume")
    start = (0, 0)
    if args.cont:
        start = _continue(args)
    if args.resume:
        if args.init:
            raise SystemExit("error: --init starts a run; --resume goes on with one")
        net, dm, prior = _resume(args, ck)
    else:
        net, prior = modelckpt.build_model(_init_checkpoint(args, ck)), []
        try:
            dm = plan_dm(net, args.d, 64 if args.m is None else args.m, parse_at(args.m_at),
                         parse_at(args.d_at, "--d-at", 1 << 16))
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
        stack_modules(net, 0, 0, form=args.form, method=args.method, dm=dm)
        print(f"k-means init of {len(dm)} convs in {time.time() - t0:.1f} s: "
              + ", ".join(f"{k} d={v[0]} m={v[1]}" for k, v in dm.items()), flush=True)
    kb = kxk_bytes(net)
    print(f"stacked k x k weights (bank + indices): {kb['bytes']} bytes, {kb['ratio']:.1f}x smaller than "
          f"float32 ({kb['float32_bytes']} bytes)", flush=True)
    ds = data_mod.load(args.data or data_mod.DEFAULT_DATA, size=tuple(ck["preprocess"]["size"]),
                       labels=list(ck["labels"]), cache_dir=args.cache_dir or data_mod.DEFAULT_CACHE)
    tr, va = ds.split("train"), ds.split("val")
    mean, std = ck["preprocess"]["mean"], ck["preprocess"]["std"]
    train_b = data_mod.Batches(tr, mean, std, args.batch_size, train=True, seed=0)
    val_b = data_mod.Batches(va, mean, std, 500, train=False)
    if args.train_limit:
        train_b.x, train_b.y = train_b.x[:args.train_limit], train_b.y[:args.train_limit]
    if start[0] >= max(1, int(args.epochs * len(train_b))):
        raise SystemExit(f"error: {args.resume} finished its schedule ({start[0]} steps): nothing to continue")
    ev0 = evaluate(net, val_b)
    print(f"{'resumed' if args.resume else 'after init'} (no training): validation top1 {ev0['top1']:.4f} "
          f"(full: {ck['val_top1']})", flush=True)
    t0 = time.time()

    def save(hist, done):                  # after every epoch: a run cut short still leaves its last epoch
        cfg = {**{k: v for k, v in vars(args).items() if k != "out"}, "init_val_top1": ev0["top1"],
               "wall_seconds": round(time.time() - t0, 1)}
        _write(make_checkpoint(done, dm, ck, hist[-1]["val_top1"], prior + hist, cfg), args.out)

    hist = finetune(net, teacher, train_b, val_b, args.epochs, args.lr, log=lambda s: print(s, flush=True),
                    on_epoch=save, bn_batches=args.bn_batches, start=start)
    print(f"wrote {args.out}: validation top1 {hist[-1]['val_top1']:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
