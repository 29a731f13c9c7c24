"""Any traced PyTorch CNN classifier -> seprt graphs (R / B / BQ) and TFLite.

    imp = from_torch(module, (224, 224), labels=[...], preprocess={...})
    g = imp.graph("BQ", binarize="3x3", calib=x)          # a validated seprt Graph
    imp.logits(x), imp.simulate(g, x)                     # PyTorch, and g's arithmetic in torch

How (docs/byo-model.md):
1. Trace: `torch.fx` symbolic tracing of the module in eval mode (nn layers
   are leaves; functional and method calls are recorded), then one run on a
   sample input records every node's concrete result (shapes, and the ints
   of `x.size()`).
2. Lower: walk the fx graph in order; each node becomes zero or one seprt
   node (`IRNode`): conv (BN after it folded in), fc, relu, act, add, mul,
   affine, concat, shuffle, slice, shortcut_a (`x[:, :, ::s, ::s]` then
   `F.pad` over channels: ResNet option A), pools, gap, flatten. Dropout, Identity, eval-mode
   stochastic depth, `contiguous` and no-op reshapes vanish. A torch tensor
   is NCHW with batch; its seprt value is (H, W, C) -- a "map" -- or (C,) --
   a "vec": a globally pooled (N, C, 1, 1) or flat (N, C) tensor, on which
   1x1 convs are fcs. Anything else is an `ImportError_` naming the fx node,
   the op and the line of the user's code.
3. Build: per variant, weights as seprt.variants does (patterns + alpha for
   the binarized k x k convs, int8 for the rest in BQ, activation ranges
   calibrated on images), into one validated Graph.

embed: the pooled features before the classifier. When the last weighted
node (the classifier) is an fc, embed is its (C,) input; when it is a conv on
a map (SqueezeNet: conv -> relu -> global pool), a `gap` of that conv's input
is added as node "embed.gap".
"""
from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from seprt import variants
from seprt.graph import Graph, Value, make_node
from seprt.ops import get_wfmt
from seprt.ops.op_act import KINDS
from seprt.quant import binarize as binarize_w, pack_pattern, quantize_weights_i8
from seprt.stacked import stack_weights

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class ImportError_(ValueError):
    """The model cannot be imported: one line naming what and where."""


@dataclass
class IRNode:
    """One seprt node of the imported model (names are value names)."""
    name: str
    op: str
    inputs: list[str]
    shape: tuple
    attrs: dict = field(default_factory=dict)
    layer: dict | None = None          # weighted: weight (OHWI or (K, C) or (C,)), bias
    where: str = ""


@dataclass
class _Const:
    """A parameter or buffer the model reads directly (timm's BatchNormAct2d: F.batch_norm(x, self.running_mean, ...))."""
    value: torch.Tensor


@dataclass
class _T:
    """A traced tensor: its seprt value and layout. layout "map" (H, W, C),
    "vec" (C,), "split" (a (N, g, C/g, H, W) view of a map), "splitT" (its
    transpose(1, 2)). chw: a vec made by flattening a (C, H, W) map."""
    value: str
    layout: str
    groups: int = 0
    chw: tuple | None = None


# --------------------------------------------------------------- op tables

ACT_MODULES = {nn.ReLU6: "relu6", nn.SiLU: "silu", nn.Hardswish: "hardswish", nn.Sigmoid: "sigmoid",
               nn.Hardsigmoid: "hardsigmoid"}
ACT_FUNCS = {F.relu6: "relu6", F.silu: "silu", F.hardswish: "hardswish", torch.sigmoid: "sigmoid",
             F.sigmoid: "sigmoid", F.hardsigmoid: "hardsigmoid"}
ACT_METHODS = {"sigmoid": "sigmoid"}
RELU_FUNCS = (F.relu, torch.relu, torch.relu_)
IDENTITY_MODULES = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.Dropout1d, nn.AlphaDropout, nn.FeatureAlphaDropout)
IDENTITY_FUNCS = (F.dropout, F.dropout2d, F.alpha_dropout, torch.dropout)
IDENTITY_METHODS = ("contiguous", "clone", "detach")
ADD_FUNCS = (operator.add, operator.iadd, torch.add)
MUL_FUNCS = (operator.mul, operator.imul, torch.mul)


def _pair(v, what: str, node) -> int:
    """An int, or a pair of equal ints, as one int; else an error."""
    if isinstance(v, (tuple, list)):
        if len(set(v)) != 1:
            raise node(f"non-square {what} {tuple(v)}; seprt takes square kernels, equal strides and "
                       "symmetric padding")
        v = v[0]
    return int(v)


def _ohwi(w: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(w.detach().double().permute(0, 2, 3, 1).numpy(), dtype=np.float32)


def _bn_scale_shift(bn) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode batch norm as y = x * s + b, in float64."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("batch norm without running statistics (track_running_stats=False)")
    s = 1.0 / torch.sqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        s = s * bn.weight.double()
    b = -bn.running_mean.double() * s
    if bn.bias is not None:
        b = b + bn.bias.double()
    return s.detach(), b.detach()


def _where(node: torch.fx.Node, gm: torch.fx.GraphModule) -> str:
    """Where a node came from: the module, and the user's line of code."""
    if node.op == "call_module":
        what = f"module {node.target!r} ({type(gm.get_submodule(node.target)).__name__})"
    elif node.op == "call_function":
        what = f"function {getattr(node.target, '__module__', '') or ''}.{getattr(node.target, '__name__', node.target)}"
        what = what.replace("_operator.", "operator.").replace("torch._C._nn.", "torch.nn.functional.").lstrip(".")
    elif node.op == "call_method":
        what = f"method .{node.target}()"
    else:
        what = f"{node.op} {node.target}"
    line = ""
    st = node.stack_trace or ""
    frames = [f for f in re.findall(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.*)', st)
              if "/torch/" not in f[0]]
    if frames:
        f, ln, fn, code = frames[-1]
        line = f" at {f.split('/')[-1]}:{ln} in {fn}: {code.strip()}"
    return what + line


def _reads_metadata(u: torch.fx.Node) -> bool:
    """Does fx node u read only a tensor's metadata (x.shape, x.ndim, x.size(), x.dim())?
    timm's BatchNormAct2d asserts x.ndim == 4: that is no second reader of the conv
    output, and the batch norm still folds into the conv."""
    if u.op == "call_function" and u.target is getattr:
        return len(u.args) > 1 and u.args[1] in ("shape", "ndim", "dtype", "device")
    return u.op == "call_method" and u.target in ("size", "dim")


class _Recorder(torch.fx.Interpreter):
    """Runs the traced module once and keeps every node's result."""

    def __init__(self, gm):
        super().__init__(gm)
        self.results = {}

    def run_node(self, n):
        r = super().run_node(n)
        self.results[n] = r
        return r


class _Tracer(torch.fx.Tracer):
    """torch.fx's tracer; modules that declare ``fx_leaf = True`` (e.g.
    training.stacked.StackedConv2d) stay leaves, like nn layers."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return bool(getattr(m, "fx_leaf", False)) or super().is_leaf_module(m, qualname)


def trace(module: nn.Module) -> torch.fx.GraphModule:
    tracer = _Tracer()
    tracer.record_stack_traces = True
    try:
        graph = tracer.trace(module)
    except Exception as e:   # noqa: BLE001 -- any failure of the user's code is reported in one line
        msg = " ".join(str(e).split()) or type(e).__name__
        raise ImportError_(f"the model does not trace with torch.fx ({type(e).__name__}: {msg[:300]}); "
                           "data-dependent control flow must be removed or wrapped in a leaf module") from None
    return torch.fx.GraphModule(tracer.root, graph)


# --------------------------------------------------------------- importer

class TorchImport:
    """A PyTorch classifier lowered to seprt's op set (see the module docstring)."""

    def __init__(self, module: nn.Module, input_size, labels=None, preprocess: dict | None = None):
        module.eval()
        self.module = module
        self.h, self.w = (int(input_size), int(input_size)) if isinstance(input_size, int) else map(int, input_size)
        self.gm = trace(module)
        x = torch.zeros(1, 3, self.h, self.w)
        self.rec = _Recorder(self.gm)
        with torch.no_grad():
            try:
                self.rec.run(x)
            except Exception as e:   # noqa: BLE001
                msg = " ".join(str(e).split())
                raise ImportError_(f"the traced model fails on a 1x3x{self.h}x{self.w} input "
                                   f"({type(e).__name__}: {msg[:300]})") from None
        self.nodes: list[IRNode] = []
        self.names: set[str] = {"input"}
        self.shapes: dict[str, tuple] = {"input": (self.h, self.w, 3)}
        with torch.no_grad():
            self._lower()
        k = self.shapes[self.output][0]
        self.labels = list(labels) if labels else [f"class_{i}" for i in range(k)]
        if len(self.labels) != k:
            raise ImportError_(f"{len(self.labels)} labels for a classifier with {k} outputs")
        pre = dict(preprocess or {})
        self.meta = {"preprocess.size": [self.h, self.w],
                     "preprocess.resize": pre.get("resize", "center_crop" if self.h > 64 else "stretch"),
                     "preprocess.mean": [float(v) for v in pre.get("mean", IMAGENET_MEAN)],
                     "preprocess.std": [float(v) for v in pre.get("std", IMAGENET_STD)],
                     "preprocess.channel_order": pre.get("channel_order", "RGB"),
                     "arch": pre.get("arch", type(module).__name__)}
        if self.meta["preprocess.resize"] == "center_crop":
            self.meta["preprocess.crop_fraction"] = float(pre.get("crop_fraction", 0.875))

    # ------------------------------------------------------------ lowering
    def _name(self, base: str) -> str:
        name = base
        i = 1
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def _add(self, base, op, inputs, shape, where, attrs=None, layer=None) -> str:
        name = self._name(base)
        self.nodes.append(IRNode(name, op, list(inputs), tuple(shape), dict(attrs or {}), layer, where))
        self.shapes[name] = tuple(shape)
        return name

    def _lower(self):
        gm = self.gm
        env: dict = {}
        folded: dict = {}                    # BN node -> the conv value it was folded into
        users = {n: [u for u in n.users if not _reads_metadata(u)] for n in gm.graph.nodes}   # for BN folding
        out_node = None
        for node in gm.graph.nodes:
            where = _where(node, gm) if node.op != "placeholder" else "input"

            def err(msg, node=node, where=where):
                return ImportError_(f"node {node.name!r} ({where}): {msg}")

            if node.op == "placeholder":
                if env:
                    raise ImportError_(f"the model takes more than one input ({node.name!r}); seprt takes one image")
                env[node] = _T("input", "map")
                continue
            if node.op == "output":
                out_node = node
                continue
            if node in folded:
                env[node] = folded[node]
                continue
            if node.op == "get_attr":      # a parameter or buffer read in forward(): a constant
                env[node] = _Const(self.rec.results[node].detach())
                continue
            args = list(torch.fx.node.map_arg(node.args, lambda a: env[a]))
            kwargs = dict(torch.fx.node.map_arg(node.kwargs, lambda a: env[a]))
            res = self.rec.results.get(node)
            tensors = [a for a in args if isinstance(a, _T)]
            base = node.target if node.op == "call_module" else node.name
            try:
                env[node] = self._lower_node(node, gm, args, kwargs, res, tensors, base, where, err, users, folded)
            except ImportError_:
                raise
            except (ValueError, TypeError, KeyError, IndexError) as e:
                raise err(f"{type(e).__name__}: {e}") from None
        out = out_node.args[0]
        if not isinstance(out, torch.fx.Node) or not isinstance(env.get(out), _T):
            n_out = len(out) if isinstance(out, (tuple, list)) else "several"
            raise ImportError_(f"the model has {n_out} outputs; seprt needs one logits tensor (N, K)")
        t = env[out]
        if t.layout != "vec":
            raise ImportError_(f"the model's output {out.name!r} is a {tuple(self.rec.results[out].shape)} map, "
                               "not logits (N, K); end the model in a classifier")
        self.output = t.value
        self._embed()

    def _embed(self):
        """embed: the classifier's (C,) input, or a gap of a conv classifier's input (module docstring)."""
        producer = {n.name: n for n in self.nodes}
        v = self.output
        while v in producer and producer[v].op not in ("conv", "fc"):
            if not producer[v].inputs:
                break
            v = producer[v].inputs[0]
        cls = producer.get(v)
        if cls is None:
            raise ImportError_("no conv or linear layer feeds the output; nothing to classify with")
        x = cls.inputs[0]
        if len(self.shapes[x]) == 1:
            self.embed = x
        else:
            self.embed = self._add("embed.gap", "gap", [x], (self.shapes[x][2],), "embed (seprt)")

    def _lower_node(self, node, gm, args, kwargs, res, tensors, base, where, err, users, folded):
        op, tgt = node.op, node.target
        mod = gm.get_submodule(tgt) if op == "call_module" else None

        def x0():
            if not tensors:
                raise err("has no tensor input")
            return tensors[0]

        def unary(seprt_op, attrs=None):
            x = x0()
            if x.layout not in ("map", "vec"):
                raise err(f"{seprt_op} on a reshaped (5-D) tensor")
            return _T(self._add(base, seprt_op, [x.value], self.shapes[x.value], where, attrs), x.layout,
                      chw=x.chw)

        def act(kind, slope=None):
            attrs = {"kind": KINDS[kind]}
            if slope is not None:
                attrs["slope"] = float(slope)
            return unary("act", attrs)

        # ---- channel split (ShuffleNetV2): a tuple of slices; indexing it picks one
        if (op == "call_method" and tgt in ("chunk", "split")) or (op == "call_function" and tgt in (torch.chunk,
                                                                                                   torch.split)):
            x = x0()
            dim = args[2] if len(args) > 2 else kwargs.get("dim", 0)
            if x.layout != "map" or dim % 4 != 1 or not isinstance(res, (tuple, list)):
                raise err("chunk/split other than of an (N, C, H, W) map along channels (dim 1)")
            h, w, _ = self.shapes[x.value]
            parts, c0 = [], 0
            for j, r in enumerate(res):
                k = r.shape[1]
                parts.append(_T(self._add(f"{base}.{j}", "slice", [x.value], (h, w, k), where,
                                          {"start": c0} if c0 else {}), "map"))
                c0 += k
            return tuple(parts)
        if op == "call_function" and tgt is operator.getitem and isinstance(args[0], tuple) and \
                all(isinstance(t, _T) for t in args[0]):
            return args[0][args[1]]

        # ---- python values (x.size(), x.shape, indexing them): keep the concrete result
        if not isinstance(res, torch.Tensor):
            if tensors and not (op == "call_method" and tgt == "size") and not (
                    op == "call_function" and tgt in (getattr, operator.getitem) and isinstance(res, (int, tuple, torch.Size))):
                raise err(f"returns {type(res).__name__}; seprt imports models whose nodes return tensors")
            return res
        if res.dtype != torch.float32:
            raise err(f"computes {res.dtype}; seprt imports float32 models")

        # ---- identities
        if (mod is not None and isinstance(mod, IDENTITY_MODULES)) or (op == "call_function" and tgt in IDENTITY_FUNCS) \
                or (op == "call_method" and tgt in IDENTITY_METHODS):
            return x0()
        if mod is not None and type(mod).__name__ in ("StochasticDepth", "DropPath"):
            return x0()
        if op == "call_function" and getattr(tgt, "__name__", "") in ("stochastic_depth", "drop_path"):
            # torchvision.ops.stochastic_depth(x, p, mode, training), timm drop_path(x, p, training): fx leaves
            training = args[3] if len(args) > 3 else kwargs.get("training", args[2] if len(args) == 3 else False)
            if training is True:
                raise err("stochastic depth in training mode")
            return x0()

        # ---- convolution / linear / batch norm
        if mod is not None and isinstance(mod, nn.Conv2d) and type(mod) is nn.Conv2d or \
                (mod is not None and type(mod).__name__ in ("Conv2dSame",)) or hasattr(mod, "stack_export"):
            return self._conv(mod, x0(), base, where, err, node, users, folded, gm)
        if mod is not None and isinstance(mod, nn.Linear):
            return self._linear(mod.weight, mod.bias, x0(), base, where, err)
        if op == "call_function" and tgt is F.linear:      # e.g. timm's Linear subclass: F.linear(x, self.weight, ...)
            w = args[1] if len(args) > 1 else kwargs.get("weight")
            b = args[2] if len(args) > 2 else kwargs.get("bias")
            if not isinstance(w, _Const) or not (b is None or isinstance(b, _Const)):
                raise err("F.linear with a computed weight; seprt imports constant weights")
            return self._linear(w.value, b.value if b is not None else None, x0(), base, where, err)
        if mod is not None and isinstance(mod, nn.BatchNorm2d):
            return self._batchnorm(mod, x0(), base, where, node, users)

        if op == "call_function" and tgt is F.batch_norm:
            names = ["running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"]
            given = dict(zip(names, args[1:]))
            given.update(kwargs)
            const = lambda k: given.get(k).value if isinstance(given.get(k), _Const) else None
            if given.get("training") or const("running_mean") is None or const("running_var") is None:
                raise err("batch norm in training mode or without running statistics")
            bn = nn.BatchNorm2d(len(const("running_var")), eps=float(given.get("eps", 1e-5)),
                                affine=const("weight") is not None)
            bn.running_mean, bn.running_var = const("running_mean"), const("running_var")
            if bn.affine:
                bn.weight.data = const("weight")
                bn.bias.data = const("bias") if const("bias") is not None else torch.zeros_like(bn.weight)
            return self._batchnorm(bn, x0(), base, where, node, users)

        # ---- channel slice x[:, a:b] (GhostNet)
        if op == "call_function" and tgt is operator.getitem and tensors:
            x, idx = x0(), args[1]
            idx = idx if isinstance(idx, tuple) else (idx,)
            full = lambda sl: isinstance(sl, slice) and sl == slice(None)
            if x.layout == "map" and len(idx) >= 2 and full(idx[0]) and isinstance(idx[1], slice) and \
                    idx[1].step in (None, 1) and all(full(i) for i in idx[2:]):
                h, w, c = self.shapes[x.value]
                start, stop, _ = idx[1].indices(c)
                if start == 0 and stop == c:
                    return x
                return _T(self._add(base, "slice", [x.value], (h, w, stop - start), where,
                                    {"start": start} if start else {}), "map")
            # x[:, :, ::s, ::s]: the first half of a ResNet option-A shortcut (F.pad over channels follows)
            sp = lambda sl: isinstance(sl, slice) and sl.start in (None, 0) and sl.stop is None
            if x.layout == "map" and len(idx) == 4 and full(idx[0]) and full(idx[1]) and sp(idx[2]) and \
                    sp(idx[3]) and idx[2].step == idx[3].step and (idx[2].step or 1) > 1:
                h, w, c = self.shapes[x.value]
                s = idx[2].step
                return _T(self._add(base, "shortcut_a", [x.value], (-(-h // s), -(-w // s), c), where,
                                    {"stride": s}), "map")
            raise err("indexing other than a channel slice x[:, a:b] or a spatial subsample x[:, :, ::s, ::s]")

        # ---- zero channel padding F.pad(x, (0, 0, 0, 0, p, p)): the second half of option A
        if op == "call_function" and tgt is F.pad and tensors:
            x = x0()
            pad = tuple(args[1] if len(args) > 1 else kwargs.get("pad", ()))
            mode = args[2] if len(args) > 2 else kwargs.get("mode", "constant")
            value = args[3] if len(args) > 3 else kwargs.get("value", None)
            if x.layout != "map" or len(pad) != 6 or any(pad[:4]) or pad[4] != pad[5] or pad[4] < 0 or \
                    mode != "constant" or value not in (None, 0, 0.0):
                raise err(f"F.pad {pad} (mode {mode!r}); seprt pads channels with zeros equally on both sides "
                          "(F.pad(x, (0, 0, 0, 0, p, p)))")
            h, w, c = self.shapes[x.value]
            last = self.nodes[-1] if self.nodes else None
            src = node.args[0]
            if last is not None and last.name == x.value and last.op == "shortcut_a" and len(users[src]) == 1:
                last.shape = (h, w, c + 2 * pad[4])            # fuse into the subsample: one shortcut_a
                self.shapes[last.name] = last.shape
                return x
            return _T(self._add(base, "shortcut_a", [x.value], (h, w, c + 2 * pad[4]), where, {"stride": 1}), "map")

        # ---- activations
        if (mod is not None and isinstance(mod, nn.ReLU)) or (op == "call_function" and tgt in RELU_FUNCS) or \
                (op == "call_method" and tgt in ("relu", "relu_")):
            return unary("relu")
        if mod is not None and isinstance(mod, nn.Hardtanh) and not isinstance(mod, nn.ReLU6):
            if (mod.min_val, mod.max_val) == (0.0, 6.0):
                return act("relu6")
            raise err(f"Hardtanh({mod.min_val}, {mod.max_val}) is not supported (only 0..6, relu6)")
        if mod is not None and type(mod) in ACT_MODULES:
            return act(ACT_MODULES[type(mod)])
        if mod is not None and isinstance(mod, nn.LeakyReLU):
            return act("leaky", mod.negative_slope)
        if op == "call_function" and tgt in ACT_FUNCS:
            return act(ACT_FUNCS[tgt])
        if op == "call_method" and tgt in ACT_METHODS:
            return act(ACT_METHODS[tgt])
        if op == "call_function" and tgt is F.hardtanh:
            lo = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
            hi = args[2] if len(args) > 2 else kwargs.get("max_val", 1.0)
            if (lo, hi) != (0.0, 6.0):
                raise err(f"hardtanh({lo}, {hi}) is not supported (only 0..6, relu6)")
            return act("relu6")
        if op == "call_function" and tgt is F.leaky_relu:
            slope = args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01)
            return act("leaky", slope)

        # ---- pooling
        if (mod is not None and isinstance(mod, (nn.MaxPool2d, nn.AvgPool2d))) or \
                (op == "call_function" and tgt in (F.max_pool2d, F.avg_pool2d, torch.max_pool2d, torch._C._nn.avg_pool2d)):
            return self._pool(mod, tgt, args, kwargs, x0(), res, base, where, err)
        if (mod is not None and isinstance(mod, nn.AdaptiveAvgPool2d)) or \
                (op == "call_function" and tgt in (F.adaptive_avg_pool2d, torch._C._nn.adaptive_avg_pool2d)):
            return self._adaptive(x0(), res, base, where, err)
        if (op == "call_function" and tgt is torch.mean) or (op == "call_method" and tgt == "mean"):
            dims = args[1] if len(args) > 1 else kwargs.get("dim")
            x = x0()
            dims = tuple(sorted(d % 4 for d in ((dims,) if isinstance(dims, int) else dims or ())))
            if x.layout != "map" or dims != (2, 3):
                raise err(f"mean over dims {dims}; seprt takes x.mean((2, 3)) of an (N, C, H, W) map (global pool)")
            return self._gap(x, base, where)

        # ---- shape changes
        if (mod is not None and isinstance(mod, nn.Flatten)) or (op == "call_function" and tgt is torch.flatten) or \
                (op == "call_method" and tgt in ("flatten", "view", "reshape", "squeeze")) or \
                (op == "call_function" and tgt in (torch.reshape, torch.squeeze)):
            return self._reshape(x0(), res, base, where, err)
        if (op == "call_method" and tgt == "transpose") or (op == "call_function" and tgt is torch.transpose):
            x = x0()
            dims = sorted(d % 5 for d in (list(args[1:3]) or [kwargs.get("dim0"), kwargs.get("dim1")]))
            if x.layout == "split" and dims == [1, 2]:
                return _T(x.value, "splitT", x.groups)
            raise err("transpose other than the channel shuffle view(N, g, C/g, H, W).transpose(1, 2)")

        # ---- joins
        if op == "call_function" and tgt is torch.cat:
            xs = args[0] if args else kwargs["tensors"]
            dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
            if any(not isinstance(t, _T) or t.layout != "map" for t in xs) or dim % 4 != 1:
                raise err("torch.cat other than of (N, C, H, W) maps along channels (dim 1)")
            if len(xs) == 1:
                return xs[0]
            s = self.shapes[xs[0].value]
            c = sum(self.shapes[t.value][2] for t in xs)
            return _T(self._add(base, "concat", [t.value for t in xs], s[:2] + (c,), where), "map")
        if (op == "call_function" and tgt in ADD_FUNCS) or (op == "call_method" and tgt in ("add", "add_")):
            if len(tensors) != 2 or len(args) + len(kwargs) > 2:
                raise err("add of a tensor and a constant (or with alpha); seprt adds two tensors")
            a, b = tensors
            if a.layout != b.layout or self.shapes[a.value] != self.shapes[b.value] or a.layout not in ("map", "vec"):
                raise err(f"add of shapes {self.shapes[a.value]} and {self.shapes[b.value]}; seprt adds equal shapes")
            return _T(self._add(base, "add", [a.value, b.value], self.shapes[a.value], where), a.layout)
        if (op == "call_function" and tgt in MUL_FUNCS) or (op == "call_method" and tgt in ("mul", "mul_")):
            if len(tensors) != 2:
                raise err("multiply by a constant; seprt multiplies a map by per-channel gates (squeeze-and-excitation)")
            a, b = tensors
            if a.layout == "vec" and b.layout == "map":
                a, b = b, a
            if a.layout != "map" or b.layout != "vec" or b.chw or self.shapes[b.value] != (self.shapes[a.value][2],):
                raise err(f"multiply of {tuple(self.rec.results[node.args[0]].shape)} by "
                          f"{tuple(self.rec.results[node.args[1]].shape)}; seprt multiplies an (N, C, H, W) map "
                          "by (N, C, 1, 1) gates")
            return _T(self._add(base, "mul", [a.value, b.value], self.shapes[a.value], where), "map")

        raise err("is not an op seprt can import (docs/byo-model.md lists what is)")

    # ------------------------------------------------------------ op helpers
    def _conv(self, m, x, base, where, err, node, users, folded, gm):
        k = _pair(m.kernel_size, "kernel", err)
        stride = _pair(m.stride, "stride", err)
        if _pair(m.dilation, "dilation", err) != 1:
            raise err(f"dilated conv (dilation {m.dilation}) is not supported")
        if m.padding_mode != "zeros":
            raise err(f"padding_mode {m.padding_mode!r} is not supported (zeros only)")
        if isinstance(m.padding, str):
            if m.padding == "valid":
                pad = 0
            elif (k - 1) % 2 or stride != 1:
                raise err(f"padding='same' with kernel {k} pads asymmetrically; seprt pads symmetrically")
            else:
                pad = (k - 1) // 2
        else:
            pad = _pair(m.padding, "padding", err)
        if type(m).__name__ == "Conv2dSame":
            raise err("timm Conv2dSame (TF 'SAME' padding) pads asymmetrically; seprt pads symmetrically")
        w = m.weight.detach().double()
        b = m.bias.detach().double() if m.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
        # fold a batch norm that is this conv's only consumer
        u = users[node]
        if len(u) == 1 and u[0].op == "call_module" and isinstance(gm.get_submodule(u[0].target), nn.BatchNorm2d):
            s, sb = _bn_scale_shift(gm.get_submodule(u[0].target))
            w = w * s.view(-1, 1, 1, 1)
            b = b * s + sb
            fold_into = u[0]
        else:
            fold_into = None
        if x.layout == "vec":
            if k != 1 or m.groups != 1:
                raise err(f"{k}x{k} conv (groups {m.groups}) on a 1x1 pooled tensor; seprt takes 1x1 convs there")
            t = self._fc_node(w.view(w.shape[0], -1).float().numpy(), b.float().numpy(), x, base, where)
        elif x.layout != "map":
            raise err("conv on a reshaped (5-D) tensor")
        else:
            h, wd, c = self.shapes[x.value]
            if pad >= k:
                raise err(f"padding {pad} >= kernel {k}; seprt pads less than the kernel")
            ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
            layer = {"weight": _ohwi(w.float()), "bias": b.float().numpy()}
            if hasattr(m, "stack_export"):       # stacked binary filters: bank + index, alpha scaled by BN
                e = m.stack_export()
                s = _bn_scale_shift(gm.get_submodule(fold_into.target))[0] if fold_into is not None else 1.0
                alpha = torch.from_numpy(e["alpha"]).double() * s
                layer.update(bank=e["bank"], index=e["index"], alpha=alpha.float().numpy())
            attrs = {"kernel": k, "stride": stride, "pad": pad, "groups": m.groups}
            t = _T(self._add(base, "conv", [x.value], (ho, wo, w.shape[0]), where, attrs, layer), "map")
        if fold_into is not None:
            folded[fold_into] = t
        return t

    def _batchnorm(self, bn, x, base, where, node, users):
        """A batch norm not folded at its conv (module BN is folded there): fold it into the
        conv or fc that produced x when x has no other reader, else an affine node."""
        s, b = _bn_scale_shift(bn)
        prod = self.nodes[-1] if self.nodes and self.nodes[-1].name == x.value else None
        fx_in = node.args[0] if node.args and isinstance(node.args[0], torch.fx.Node) else None
        if prod is not None and prod.op in ("conv", "fc") and fx_in is not None and len(users[fx_in]) == 1:
            w = prod.layer["weight"].astype(np.float64)
            prod.layer["weight"] = (w * s.numpy().reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
            prod.layer["bias"] = (prod.layer["bias"] * s.numpy() + b.numpy()).astype(np.float32)
            return x
        layer = {"weight": s.float().numpy(), "bias": b.float().numpy()}
        return _T(self._add(base, "affine", [x.value], self.shapes[x.value], where, layer=layer), x.layout)

    def _fc_node(self, w, b, x, base, where):
        layer = {"weight": np.ascontiguousarray(w, np.float32), "bias": np.ascontiguousarray(b, np.float32)}
        return _T(self._add(base, "fc", [x.value], (w.shape[0],), where, layer=layer), "vec")

    def _linear(self, weight, bias, x, base, where, err):
        if x.layout != "vec":
            raise err("Linear on a 4-D map; flatten or pool it first")
        w = weight.detach().float().numpy()
        b = bias.detach().float().numpy() if bias is not None else np.zeros(w.shape[0], np.float32)
        if x.chw is not None and x.chw[1] * x.chw[2] > 1:   # PyTorch flattens C, H, W; seprt H, W, C
            c, h, wd = x.chw
            w = w.reshape(-1, c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
        return self._fc_node(w, b, x, base, where)

    def _gap(self, x, base, where):
        return _T(self._add(base, "gap", [x.value], (self.shapes[x.value][2],), where), "vec")

    def _pool(self, mod, tgt, args, kwargs, x, res, base, where, err):
        if x.layout != "map":
            raise err("pooling of a tensor that is not an (N, C, H, W) map")
        if mod is not None:
            is_max = isinstance(mod, nn.MaxPool2d)
            p = {"kernel": mod.kernel_size, "stride": mod.stride, "pad": mod.padding, "ceil": mod.ceil_mode}
            if is_max:
                if _pair(mod.dilation, "dilation", err) != 1 or mod.return_indices:
                    raise err("max pool with dilation or return_indices is not supported")
            else:
                p["cip"] = mod.count_include_pad
                if mod.divisor_override:
                    raise err("avg pool with divisor_override is not supported")
        else:
            is_max = tgt in (F.max_pool2d, torch.max_pool2d)
            names = ["kernel_size", "stride", "padding"] + (["dilation", "ceil_mode", "return_indices"] if is_max else
                                                            ["ceil_mode", "count_include_pad", "divisor_override"])
            given = dict(zip(names, args[1:]))
            given.update(kwargs)
            if is_max and (_pair(given.get("dilation", 1), "dilation", err) != 1 or given.get("return_indices")):
                raise err("max pool with dilation or return_indices is not supported")
            if not is_max and given.get("divisor_override"):
                raise err("avg pool with divisor_override is not supported")
            p = {"kernel": given["kernel_size"], "stride": given.get("stride") or given["kernel_size"],
                 "pad": given.get("padding", 0), "ceil": given.get("ceil_mode", False),
                 "cip": given.get("count_include_pad", True)}
        k = _pair(p["kernel"], "kernel", err)
        s = _pair(p["stride"] if p["stride"] not in (None, [], ()) else k, "stride", err)
        pad = _pair(p["pad"], "padding", err)
        attrs = {"kernel": k, "stride": s, "pad": pad, "ceil_mode": int(bool(p["ceil"]))}
        if not is_max:
            attrs["count_include_pad"] = int(bool(p["cip"])) if pad > 0 else 0
        shape = (res.shape[2], res.shape[3], res.shape[1])
        return _T(self._add(base, "maxpool" if is_max else "avgpool", [x.value], shape, where, attrs), "map")

    def _adaptive(self, x, res, base, where, err):
        if x.layout != "map":
            raise err("adaptive pooling of a tensor that is not an (N, C, H, W) map")
        h, w, c = self.shapes[x.value]
        ho, wo = res.shape[2], res.shape[3]
        if (ho, wo) == (1, 1):
            return self._gap(x, base, where)
        if (ho, wo) == (h, w):
            return x
        if h % ho or w % wo or h // ho != w // wo:
            raise err(f"adaptive average pool {h}x{w} -> {ho}x{wo} is not a square k x k pool; "
                      "choose an input size that makes it one")
        k = h // ho
        return _T(self._add(base, "avgpool", [x.value], (ho, wo, c), where, {"kernel": k, "stride": k}), "map")

    def _reshape(self, x, res, base, where, err):
        shape = tuple(res.shape)
        if x.layout == "vec":
            if len(shape) == 2 or (len(shape) == 4 and shape[2:] == (1, 1)):
                return x
        if x.layout == "map":
            h, w, c = self.shapes[x.value]
            if shape == (1, c, h, w):
                return x
            if len(shape) == 2 and shape[1] == h * w * c:
                if h * w == 1:
                    v = self._add(base, "flatten", [x.value], (c,), where)
                    return _T(v, "vec")
                return _T(self._add(base, "flatten", [x.value], (h * w * c,), where), "vec", chw=(c, h, w))
            if len(shape) == 5 and shape[3:] == (h, w) and shape[1] * shape[2] == c:
                return _T(x.value, "split", shape[1])
        if x.layout == "split" and len(shape) == 5:
            return x
        if x.layout == "splitT":
            h, w, c = self.shapes[x.value]
            if shape == (1, c, h, w):
                return _T(self._add(base, "shuffle", [x.value], (h, w, c), where, {"groups": x.groups}), "map")
            if len(shape) == 5:
                return x
        raise err(f"reshape to {shape} is not a flatten before the classifier or a channel shuffle")

    # ------------------------------------------------------------ graphs
    def binarized(self, mode: str | None) -> set[str]:
        """Names of the convs `mode` turns into patterns: "all" (every k x k, k > 1),
        "inner" (all but convs reading the image), "3x3", "5x5", "3x3,5x5" (by kernel), "none",
        or comma-separated module names of k x k convs."""
        if not mode or mode == "none":
            return set()
        convs = [n for n in self.nodes if n.op == "conv" and n.attrs["kernel"] > 1]
        if mode == "all":
            return {n.name for n in convs}
        if mode == "inner":
            return {n.name for n in convs if n.inputs[0] != "input"}
        names = {n.name for n in convs}
        parts = [p.strip() for p in mode.split(",")]
        if all(p in names for p in parts):        # module names (a training module checkpoint's "binarized")
            return set(parts)
        ks = set()
        for part in parts:
            m = re.fullmatch(r"(\d+)x(\d+)", part)
            if not m or m.group(1) != m.group(2) or int(m.group(1)) < 2:
                raise ImportError_(f"--binarize {mode!r}: use all, inner, none or kernel sizes like 3x3 or 3x3,5x5")
            ks.add(int(m.group(1)))
        return {n.name for n in convs if n.attrs["kernel"] in ks}

    def layers(self, binarize: str | None) -> dict[str, dict]:
        """Per weighted node: weight, bias (+ pattern, alpha if binarized)."""
        chosen = self.binarized(binarize)
        out = {}
        for n in self.nodes:
            if n.layer is None:
                continue
            d = dict(n.layer)
            if n.name in chosen:
                d["pattern"], d["alpha"] = _binarize(d["weight"])
            out[n.name] = d
        return out

    def _weights(self, layers, variant):
        w = {}
        for n in self.nodes:
            if n.layer is None:
                continue
            d = layers[n.name]
            bias = np.asarray(d["bias"], np.float32)
            if n.op == "affine":
                w[n.name] = {"wfmt": "f32", "weight": np.asarray(d["weight"], np.float32), "bias": bias}
            elif variant != "R" and "bank" in d:
                w[n.name] = stack_weights(d)
            elif variant != "R" and "pattern" in d:
                w[n.name] = {"wfmt": "bin", "weight": pack_pattern(d["pattern"]),
                             "scale": np.asarray(d["alpha"], np.float32), "bias": bias}
            elif variant == "BQ":
                q, s = quantize_weights_i8(d["weight"])
                w[n.name] = {"wfmt": "i8", "weight": q, "scale": s, "bias": bias}
            else:
                w[n.name] = {"wfmt": "f32", "weight": np.asarray(d["weight"], np.float32), "bias": bias}
        return w

    def _graph(self, weights, meta, act_quant=None) -> Graph:
        act_quant = act_quant or {}
        index = {"input": 0}
        values = [Value("input", (self.h, self.w, 3), *act_quant.get("input", (0.0, 0, 0)))]
        nodes = []
        for n in self.nodes:
            index[n.name] = len(values)
            values.append(Value(n.name, n.shape, *act_quant.get(n.name, (0.0, 0, 0))))
            nodes.append(make_node(n.name, n.op, [index[i] for i in n.inputs], index[n.name], n.attrs,
                                   weights.get(n.name)))
        g = Graph(values, nodes, 0, index[self.output], index[self.embed], {"labels": self.labels, **meta})
        g.validate()
        return g

    def graph(self, variant: str, binarize: str | None = "all", calib: np.ndarray | None = None,
              act_bits: int = 8, meta: dict | None = None) -> Graph:
        """The seprt graph of one variant.

        Args:
            variant: "R" (float), "B" (patterns + float rest), "BQ" (patterns + int8 rest).
            binarize: which k x k convs become patterns (`binarized`); ignored for R.
            calib: (N, H, W, 3) preprocessed float32 images; BQ calibrates activation ranges on them.
            act_bits: bits of the activations feeding binary convs (BQ).
        Example:
            >>> imp = from_torch(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            ...                                nn.Flatten(), nn.Linear(4, 2)), (8, 8))
            >>> [n.op for n in imp.graph("B").nodes]
            ['conv', 'relu', 'gap', 'fc']
        """
        layers = self.layers(binarize if variant != "R" else None)
        meta = {**self.meta, **(meta or {}), "variant": variant}
        if variant == "R" or not binarize or binarize == "none":
            meta.pop("provenance.binarize", None)
        else:
            meta.setdefault("provenance.binarize", binarize)     # a caller's name for the selection wins
        if variant != "BQ":
            return self._graph(self._weights(layers, variant), meta)
        if calib is None or len(calib) == 0:
            raise ImportError_("variant BQ needs calibration images")
        gb = self._graph(self._weights(layers, "B"), {**meta, "variant": "B"})
        # values read by a conv or fc are quantized in BQ (an affine reads floats)
        act_quant = variants.calibrate(gb, calib, act_bits, reads=lambda n: n.op in ("conv", "fc"))
        return self._graph(self._weights(layers, "BQ"), {**meta, "act_bits": act_bits}, act_quant)

    # ------------------------------------------------------------ running
    @torch.no_grad()
    def logits(self, x: np.ndarray, batch: int = 16) -> np.ndarray:
        """The PyTorch module on x (N, H, W, 3) float32 -> (N, K)."""
        outs = []
        for i in range(0, len(x), batch):
            t = torch.from_numpy(np.ascontiguousarray(x[i:i + batch].transpose(0, 3, 1, 2)))
            outs.append(self.module(t).reshape(len(t), -1).float().numpy())
        return np.concatenate(outs)

    @torch.no_grad()
    def simulate(self, g: Graph, x: np.ndarray, batch: int = 16) -> np.ndarray:
        """Graph g's arithmetic run with torch ops (an executor independent of
        seprt's numpy reference and kernels): effective weights of g (alpha *
        pattern, or int8 q * scale) and, for a BQ graph, every quantized value
        fake-quantized before the conv/fc that reads it. x (N, H, W, 3) -> (N, K)."""
        return np.concatenate([_simulate(g, torch.from_numpy(np.ascontiguousarray(
            x[i:i + batch].transpose(0, 3, 1, 2)))).numpy() for i in range(0, len(x), batch)])

    def params(self, binarize: str | None = None) -> dict:
        """Weights of convs and fcs (biases and BN not counted, as the paper):
        full, and how many of them become 1-bit patterns with `binarize`."""
        chosen = self.binarized(binarize)
        full = pat = 0
        for n in self.nodes:
            if n.op in ("conv", "fc"):
                c = int(np.prod(n.layer["weight"].shape))
                full += c
                pat += c if n.name in chosen else 0
        return {"full": full, "pattern": pat, "real": full - pat}


def _binarize(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pattern and alpha of w (K, kh, kw, c). A weight that already is alpha * pattern
    (a trained pattern conv, BN folded) gives back exactly that alpha = |w[o]|;
    any other weight alpha = mean |w| (paper Eq. 1, `seprt.quant.binarize`)."""
    a = np.abs(np.asarray(w, np.float32)).reshape(len(w), -1)
    if (a == a[:, :1]).all():
        return np.where(w >= 0, 1, -1).astype(np.int8), a[:, 0].copy()
    return binarize_w(w)


def _fq_act(x, v):
    s = torch.tensor(v.q_scale, dtype=torch.float32)
    q = torch.clamp(torch.round(x / s) + v.q_zero, 0, (1 << v.q_bits) - 1)
    return (q - v.q_zero) * s


@torch.no_grad()
def _simulate(g: Graph, x: torch.Tensor) -> torch.Tensor:
    vals = {g.input: x}
    from seprt.kernels.elementwise import (ACT_HARDSIGMOID, ACT_HARDSWISH, ACT_LEAKY, ACT_RELU6, ACT_SIGMOID,
                                           ACT_SILU)
    for n in g.nodes:
        xs = [vals[i] for i in n.inputs]
        if n.op in ("conv", "fc", "affine"):
            inp = xs[0]
            v = g.values[n.inputs[0]]
            if v.q_bits and n.wfmt and get_wfmt(n.wfmt).integer:      # i8, bin, stack, stack_packed
                inp = _fq_act(inp, v)
            w = torch.tensor(np.array(g.float_weight(n), np.float32))
            b = torch.tensor(np.array(n.bias, np.float32))
            if n.op == "affine":
                shape = (1, -1, 1, 1) if inp.dim() == 4 else (1, -1)
                y = inp * w.view(shape) + b.view(shape)
            elif n.op == "fc":
                y = F.linear(inp, w, b)
            else:
                y = F.conv2d(inp, w.permute(0, 3, 1, 2), b, n.stride, n.pad, 1, n.groups)
        elif n.op == "relu":
            y = torch.relu(xs[0])
        elif n.op == "act":
            k, a = n.attrs["kind"], xs[0]
            y = {ACT_RELU6: lambda: F.relu6(a), ACT_LEAKY: lambda: F.leaky_relu(a, n.attrs["slope"]),
                 ACT_SILU: lambda: F.silu(a), ACT_HARDSWISH: lambda: F.hardswish(a),
                 ACT_SIGMOID: lambda: torch.sigmoid(a), ACT_HARDSIGMOID: lambda: F.hardsigmoid(a)}[k]()
        elif n.op == "add":
            y = xs[0] + xs[1]
        elif n.op == "mul":
            y = xs[0] * xs[1][:, :, None, None]
        elif n.op == "maxpool":
            y = F.max_pool2d(xs[0], n.kernel, n.stride, n.pad, ceil_mode=bool(n.attrs["ceil_mode"]))
        elif n.op == "avgpool":
            y = F.avg_pool2d(xs[0], n.kernel, n.stride, n.pad, ceil_mode=bool(n.attrs["ceil_mode"]),
                             count_include_pad=bool(n.attrs["count_include_pad"]))
        elif n.op == "gap":
            y = xs[0].mean(dim=(2, 3))
        elif n.op == "concat":
            y = torch.cat(xs, 1)
        elif n.op == "shuffle":
            a, gr = xs[0], n.attrs["groups"]
            y = a.view(a.shape[0], gr, a.shape[1] // gr, *a.shape[2:]).transpose(1, 2).reshape(a.shape)
        elif n.op == "slice":
            c0 = n.attrs["start"]
            y = xs[0][:, c0:c0 + g.values[n.output].shape[-1]]
        elif n.op == "shortcut_a":
            p = (g.values[n.output].shape[-1] - xs[0].shape[1]) // 2
            y = F.pad(xs[0][:, :, ::n.stride, ::n.stride], (0, 0, 0, 0, p, p))
        elif n.op == "flatten":
            y = xs[0].permute(0, 2, 3, 1).reshape(len(xs[0]), -1)     # NHWC order, as seprt
        else:
            raise ValueError(f"{n.name}: no torch simulation for op {n.op!r}")
        vals[n.output] = y
    return vals[g.output]


def from_torch(module: nn.Module, input_size, labels=None, preprocess: dict | None = None) -> TorchImport:
    """Trace and lower a PyTorch classifier (module docstring).

    Args:
        module: an nn.Module mapping (N, 3, H, W) float32 to logits (N, K); set to eval mode.
        input_size: H (square) or (H, W).
        labels: K class names (default class_0..).
        preprocess: optional mean, std (3 floats on the 0..1 scale), resize
            ("stretch" / "center_crop"), crop_fraction, channel_order, arch (a name).
    Returns:
        a TorchImport; `.graph(variant, binarize, calib)` builds seprt graphs.
    Raises:
        ImportError_ (a ValueError) naming the node, the op and the line of code it came from.
    """
    return TorchImport(module, input_size, labels, preprocess)
