"""Pattern binarization of any PyTorch module, by swapping its Conv2d modules.

    names = binarize_modules(model, which="all", method="refine")   # in place
    reestimate_bn(model, batches)                                     # BN statistics after binarizing
    ... train ...                                                     # alpha (and W for "ste") learn
    sd = plain_state_dict(model)     # the user's own state_dict: W = alpha * sign(W) for those names

`PatternConv2d` is an `nn.Conv2d` (same stride, padding, dilation, groups,
bias, same state_dict keys plus ``alpha``) whose forward uses the effective
weight ``alpha[o] * B[o]`` with ``B = sign(weight)`` (sign(0) = +1) and one
learnable scale ``alpha`` per output filter, initialised to the optimum of the
paper's Eq. 1, ``mean |W|`` over the filter (c/g x kh x kw):

* method ``"refine"``: the pattern is frozen. ``weight`` stops requiring a
  gradient (so neither the optimizer nor DDP touch it) and only ``alpha``,
  the bias and the rest of the network train.
* method ``"ste"``: the patterns are learned. ``weight`` is a latent
  full-precision proxy; sign goes straight through in the backward pass
  (d sign(w)/dw := 1), ``alpha`` learns too.

Only convs with a kernel larger than 1x1 are binarized; 1x1 convs, linear
layers and BN stay real (seprt quantizes them to int8). Nothing in the user's
code changes: the modules are replaced by attribute on their parent, so
`model.named_modules()` names stay the same and `plain_state_dict` gives
back exactly the keys of the original module.

Example:
    >>> import torch, torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
    ...                     nn.Conv2d(8, 4, 1))
    >>> binarize_modules(net, "all")
    ['0']
    >>> sd = plain_state_dict(net)
    >>> sorted(sd) == sorted(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
    ...                                    nn.Conv2d(8, 4, 1)).state_dict())
    True
    >>> w = sd["0.weight"]; bool((w.abs() == w.abs().flatten(1)[:, :1].view(-1, 1, 1, 1)).all())
    True
"""
from __future__ import annotations

import fnmatch
import math
from typing import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

METHODS = ("refine", "ste")


def sign_pm1(w: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1: entries in {+1, -1}, same dtype as `w`."""
    return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))


def filter_alpha(w: torch.Tensor) -> torch.Tensor:
    """Optimal per-filter scale of Eq. 1: mean |W| over each output filter.
    w (O, I/g, kh, kw) -> (O,)."""
    return w.abs().flatten(1).double().mean(1).to(w.dtype)     # float64 sum: exact for a pattern weight


class _SignSTE(torch.autograd.Function):
    """sign_pm1 forward, identity backward (straight-through estimator)."""

    @staticmethod
    def forward(ctx, w):
        return sign_pm1(w)

    @staticmethod
    def backward(ctx, g):
        return g


class PatternConv2d(nn.Conv2d):
    """A Conv2d computing with alpha[o] * sign(weight[o]) (see the module doc).

    State: ``weight`` (O, I/g, kh, kw) the full-precision proxy (frozen for
    "refine", latent for "ste"), ``bias`` (O,) if the conv had one, ``alpha``
    (O,) the learned scales.
    """

    def __init__(self, *args, method: str = "refine", **kw):
        super().__init__(*args, **kw)
        if method not in METHODS:
            raise ValueError(f"unknown pattern method {method!r}; use one of {', '.join(METHODS)}")
        self.method = method
        self.alpha = nn.Parameter(filter_alpha(self.weight.detach()).clone())
        if method == "refine":
            self.weight.requires_grad_(False)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, method: str = "refine") -> "PatternConv2d":
        """A PatternConv2d sharing nothing with `conv`: copies its weight (and
        bias), alpha = mean|W| per filter."""
        m = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                padding_mode=conv.padding_mode, method=method,
                device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            m.weight.copy_(conv.weight)
            if conv.bias is not None:
                m.bias.copy_(conv.bias)
            m.alpha.copy_(filter_alpha(conv.weight.detach()))
        m.train(conv.training)
        return m

    def pattern(self) -> torch.Tensor:
        """The ±1 pattern B = sign(weight), (O, I/g, kh, kw)."""
        return sign_pm1(self.weight.detach())

    def effective_weight(self) -> torch.Tensor:
        """alpha[o] * B[o]: the weight the forward pass uses."""
        b = _SignSTE.apply(self.weight) if self.method == "ste" else sign_pm1(self.weight.detach())
        return self.alpha.view(-1, 1, 1, 1) * b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)

    def to_conv(self) -> nn.Conv2d:
        """A plain nn.Conv2d with weight = alpha * sign(weight) (what seprt stores)."""
        c = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, stride=self.stride,
                      padding=self.padding, dilation=self.dilation, groups=self.groups,
                      bias=self.bias is not None, padding_mode=self.padding_mode,
                      device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            c.weight.copy_(self.alpha.detach().view(-1, 1, 1, 1) * self.pattern())
            if self.bias is not None:
                c.bias.copy_(self.bias)
        c.train(self.training)
        return c

    def extra_repr(self) -> str:
        return super().extra_repr() + f", method={self.method}"


def is_kxk_conv(m: nn.Module) -> bool:
    """A plain nn.Conv2d (or an already swapped PatternConv2d) with a kernel
    larger than 1x1: what seprt binarizes. Subclasses of nn.Conv2d with a
    forward of their own (weight standardization, ...) are not swapped: their
    forward would be lost."""
    return type(m) in (nn.Conv2d, PatternConv2d) and tuple(m.kernel_size) != (1, 1)


def kxk_convs(model: nn.Module) -> list[str]:
    """Qualified names of every k x k (k > 1) Conv2d, in module order."""
    return [n for n, m in model.named_modules() if is_kxk_conv(m)]


def select(model: nn.Module, which: str | Iterable[str] | Callable[[str, nn.Module], bool] = "all",
           flag: str = "--binarize") -> list[str]:
    """The k x k conv names `which` chooses, in module order.

    which:
      * ``"all"``: every k x k conv;
      * a preset the model declares in ``model.binarize_presets``
        ({name: comma-separated patterns}, e.g. the SEP-Nets' ``"prb"``);
      * comma-separated module-name patterns (fnmatch: ``*``, ``?``, ``[..]``),
        each one a name (``layer1.0.conv1``), a glob (``features.*``) or, with a
        leading ``!``, an exclusion applied after the inclusions
        (``all,!conv1`` = every k x k conv but ``conv1``);
      * a list of such patterns, or a callable ``(name, module) -> bool``.
    Raises ValueError if a pattern matches no k x k conv (listing them), or
    names only 1x1 convs (which stay real); its message names the option `flag`.
    """
    convs = kxk_convs(model)
    mods = dict(model.named_modules())
    if callable(which) and not isinstance(which, str):
        return [n for n in convs if which(n, mods[n])]
    pats = [p.strip() for p in (which.split(",") if isinstance(which, str) else list(which)) if p.strip()]
    presets = getattr(model, "binarize_presets", {}) or {}
    expanded: list[str] = []
    for p in pats:
        neg = p.startswith("!")
        body = p[1:] if neg else p
        if body in presets:
            expanded += [("!" if neg else "") + q.strip() for q in presets[body].split(",") if q.strip()]
        else:
            expanded.append(p)
    if not expanded:
        raise ValueError(f"empty {flag}: give 'all', a preset or module-name patterns")
    chosen: set[str] = set()
    for p in [p for p in expanded if not p.startswith("!")] + [p for p in expanded if p.startswith("!")]:
        neg = p.startswith("!")
        body = p[1:] if neg else p
        hits = convs if body == "all" else [n for n in convs if fnmatch.fnmatchcase(n, body)]
        if not hits:
            ones = [n for n, m in mods.items() if isinstance(m, nn.Conv2d) and fnmatch.fnmatchcase(n, body)]
            sub = [n for n in ones if type(mods[n]) is not nn.Conv2d and tuple(mods[n].kernel_size) != (1, 1)]
            why = (f"it names {type(mods[sub[0]]).__name__} ({', '.join(sub[:4])}), a subclass of nn.Conv2d "
                   f"with its own forward, which is not swapped" if sub else
                   f"it names only 1x1 conv(s) ({', '.join(ones[:4])}), which stay real" if ones else
                   "it matches no k x k conv")
            known = ", ".join(convs[:12]) + (f", ... ({len(convs)} in all)" if len(convs) > 12 else "")
            pre = f"; presets: {', '.join(presets)}" if presets else ""
            raise ValueError(f"{flag} pattern {p!r}: {why}; the k x k convs are: {known or 'none'}{pre}")
        chosen = (chosen - set(hits)) if neg else (chosen | set(hits))
    return [n for n in convs if n in chosen]


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def binarize_modules(model: nn.Module, which="all", method: str = "refine") -> list[str]:
    """Replace the chosen k x k Conv2d modules by PatternConv2d in place.

    Returns their qualified names (module order). Convs that are already
    PatternConv2d are left alone. See `select` for `which`.
    """
    if method not in METHODS:
        raise ValueError(f"unknown pattern method {method!r}; use one of {', '.join(METHODS)}")
    names = select(model, which)
    if not names:
        raise ValueError("--binarize selects no conv (the model has no k x k Conv2d)")
    for n in names:
        m = model.get_submodule(n)
        if not isinstance(m, PatternConv2d):
            _set_submodule(model, n, PatternConv2d.from_conv(m, method))
    return names


def pattern_modules(model: nn.Module) -> dict[str, PatternConv2d]:
    """{qualified name: PatternConv2d} of a (possibly DDP-wrapped) model."""
    return {n: m for n, m in unwrap(model).named_modules() if isinstance(m, PatternConv2d)}


def unbinarize(model: nn.Module) -> list[str]:
    """Replace every PatternConv2d by a plain Conv2d holding alpha * sign(W)."""
    names = list(pattern_modules(model))
    for n in names:
        _set_submodule(model, n, model.get_submodule(n).to_conv())
    return names


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state_dict of the model as its author wrote it: every PatternConv2d
    contributes ``weight`` = alpha * sign(weight) (and its bias), no ``alpha``.
    Detached copies; the model is not changed."""
    model = unwrap(model)
    pats = pattern_modules(model)
    sd = {}
    for k, v in model.state_dict().items():
        mod, _, leaf = k.rpartition(".")
        if mod in pats:
            if leaf == "alpha":
                continue
            if leaf == "weight":
                p = pats[mod]
                v = p.alpha.detach().view(-1, 1, 1, 1) * p.pattern()
        sd[k] = v.detach().clone()
    return sd


def is_pattern_weight(w: torch.Tensor) -> bool:
    """Whether every filter of w (O, ...) is alpha[o] * (±1): all |w| in a filter equal."""
    a = w.detach().abs().flatten(1)
    return bool((a == a[:, :1]).all())


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@torch.no_grad()
def reestimate_bn(model: nn.Module, batches, max_batches: int = 100) -> int:
    """Recompute every BatchNorm's running mean/var as the plain average over
    up to `max_batches` training batches (forward in train mode, no weight
    change). Returns the number of batches used."""
    net = unwrap(model)
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    was = net.training
    net.train()
    n = 0
    for i, (x, _) in enumerate(batches):
        if i >= max_batches:
            break
        net(x)
        n += 1
    for m, mo in zip(bns, saved):
        m.momentum = mo
    net.train(was)
    return n


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)), batch mean."""
    return F.kl_div(F.log_softmax(logits / T, 1), F.log_softmax(teacher_logits / T, 1),
                    reduction="batchmean", log_target=True) * T * T


def cosine_epoch(net: nn.Module, train_b, opt, lr: float, step: int, total: int, epoch: int):
    """One epoch of `train_b` (shuffled for `epoch`), `net` in train mode: yields
    (global step, x, y) from `step` until `total`, each after setting every
    param group's lr to the cosine schedule 0.5 * lr * (1 + cos(pi * step / total))."""
    train_b.set_epoch(epoch)
    net.train()
    for x, y in train_b:
        if step >= total:
            return
        for g in opt.param_groups:
            g["lr"] = 0.5 * lr * (1 + math.cos(math.pi * step / total))
        yield step, x, y
        step += 1


def quantization_error(model: nn.Module, skip: Iterable[str] = ()) -> dict[str, dict[str, float]]:
    """The paper's Table 1 statistic for every real nn.Conv2d (names in `skip`
    and PatternConv2d left out), grouped by kernel size: mean over filters of
    ||W - alpha B||_F^2 / (c k k) with B = sign(W), alpha = mean|W| (1x1
    filters as if they were binarized too). Returns {"1x1": {"error": e,
    "filters": n, "mean_sq_weight": m}, "3x3": ...}; mean_sq_weight (mean of
    W^2) gives the scale, since the error alone depends on the weights' size."""
    acc: dict[tuple, list[float]] = {}
    skip = set(skip)
    for name, m in unwrap(model).named_modules():
        if type(m) is not nn.Conv2d or name in skip:
            continue
        w = m.weight.detach().double().flatten(1)
        alpha = w.abs().mean(1, keepdim=True)
        err = ((w - alpha * sign_pm1(w)) ** 2).mean(1)
        a = acc.setdefault(tuple(m.kernel_size), [0.0, 0, 0.0])
        a[0] += float(err.sum())
        a[1] += w.shape[0]
        a[2] += float((w ** 2).mean(1).sum())
    return {f"{k[0]}x{k[1]}": {"error": s / n, "filters": n, "mean_sq_weight": q / n}
            for k, (s, n, q) in sorted(acc.items())}
