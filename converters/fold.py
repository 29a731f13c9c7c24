"""PyTorch checkpoint -> per-layer float arrays for `seprt.variants.build_graph`.

BN is folded into each conv: with s = gamma / sqrt(var + eps),
    W' = W * s[o],   b' = beta - mean * s
For a pattern conv (W = alpha * B) the fold keeps the pattern and scales
alpha: alpha' = alpha * s. A negative s (gamma < 0) flips that filter's
pattern and keeps alpha' = |alpha * s| >= 0: alpha' B' is the same weight.
Patterns and alpha are taken from the checkpoint as trained, never
re-derived from weights.
"""
from __future__ import annotations

import numpy as np
import torch

from training import nets


def ohwi(w: torch.Tensor) -> np.ndarray:
    """(O, I, kh, kw) torch -> (O, kh, kw, I) float32 numpy."""
    return np.ascontiguousarray(w.detach().permute(0, 2, 3, 1).numpy(), dtype=np.float32)


def fold_conv(conv: nets.ConvBN) -> dict:
    """One ConvBN -> {"weight", "bias"} (+ "pattern", "alpha" if binarized)."""
    e = conv.export()
    bn = e["bn"]
    s = (bn["gamma"].double() / torch.sqrt(bn["var"].double() + bn["eps"]))
    bias = (bn["beta"].double() - bn["mean"].double() * s).float().numpy()
    if e["mode"] == "real":
        w = e["weight"].double() * s.view(-1, 1, 1, 1)
        return {"weight": ohwi(w.float()), "bias": bias}
    alpha = e["alpha"].double() * s                           # (O,)
    flip = torch.where(alpha < 0, -1.0, 1.0).double()
    pattern = e["pattern"].double() * flip.view(-1, 1, 1, 1)
    alpha = alpha.abs()
    weight = (alpha.view(-1, 1, 1, 1) * pattern).float()
    return {"weight": ohwi(weight), "bias": bias,
            "pattern": ohwi(pattern).astype(np.int8), "alpha": alpha.float().numpy()}


def fold_net(net: nets.Net) -> dict[str, dict]:
    """Every conv (BN folded) and fc of a network, as numpy arrays."""
    layers = {name: fold_conv(conv) for name, conv in nets.conv_layers(net)}
    for name, fc in nets.fc_layers(net):
        layers[name] = {"weight": fc.weight.detach().float().numpy().copy(),
                        "bias": fc.bias.detach().float().numpy().copy()}
    return layers


def preprocess_meta(pre: dict) -> dict:
    """Checkpoint preprocess dict -> seprt metadata keys."""
    meta = {"preprocess.size": [int(v) for v in pre["size"]], "preprocess.resize": pre["resize"],
            "preprocess.mean": [float(v) for v in pre["mean"]], "preprocess.std": [float(v) for v in pre["std"]],
            "preprocess.channel_order": pre.get("channel_order", "RGB")}
    if "crop_fraction" in pre:
        meta["preprocess.crop_fraction"] = float(pre["crop_fraction"])
    return meta


# ----------------------------------------------------------- simulated BQ

def _fake_quant_act(x: torch.Tensor, scale: float, zero: int, bits: int) -> torch.Tensor:
    s = torch.tensor(scale, dtype=torch.float32)
    q = torch.clamp(torch.round(x / s) + zero, 0, (1 << bits) - 1)   # round: half to even
    return (q - zero) * s


def _fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """Symmetric per-output-channel int8, as seprt.quant.quantize_weights_i8."""
    amax = w.abs().flatten(1).max(1).values
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax)).view(-1, *([1] * (w.dim() - 1)))
    return torch.clamp(torch.round(w / scale), -127, 127) * scale


@torch.no_grad()
def simulate(net: nets.Net, act_quant: dict[str, tuple[float, int, int]], x: torch.Tensor) -> torch.Tensor:
    """The PyTorch model with BQ's weight and activation quantization simulated.

    Runs the checkpoint's own modules (BN folded here in torch, independently
    of the numpy path): binarized convs use alpha * pattern, every other conv
    and fc int8 fake-quantized weights; the input of every conv/fc is
    fake-quantized with the calibrated (scale, zero, bits) of that value.
    x: (N, 3, H, W) float32 -> logits (N, K).
    """
    a = net.arch
    vals = {"input": x}
    for l in a.layers:
        ins = [vals[n] for n in l.inputs]
        if l.op in ("conv", "fc"):
            inp = ins[0]
            if l.inputs[0] in act_quant:
                inp = _fake_quant_act(inp, *act_quant[l.inputs[0]])
            m = net.layers[nets.key(l.name)]
            if l.op == "fc":
                y = torch.nn.functional.linear(inp, _fake_quant_weight(m.weight), m.bias)
            else:
                bn = m.bn
                s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                w = m.effective_weight() * s.view(-1, 1, 1, 1)
                if m.mode == "real":
                    w = _fake_quant_weight(w)
                b = bn.bias - bn.running_mean * s
                y = torch.nn.functional.conv2d(inp, w, b, m.stride, m.pad, 1, m.groups)
        elif l.op == "relu":
            y = torch.relu(ins[0])
        elif l.op == "add":
            y = ins[0] + ins[1]
        elif l.op == "maxpool":
            y = torch.nn.functional.max_pool2d(ins[0], l.kernel, l.stride, l.pad)
        elif l.op == "avgpool":
            y = torch.nn.functional.avg_pool2d(ins[0], l.kernel, l.stride, l.pad, count_include_pad=False)
        elif l.op == "gap":
            y = ins[0].mean(dim=(2, 3))
        elif l.op == "shortcut_a":
            p = (l.out_channels - ins[0].shape[1]) // 2
            y = torch.nn.functional.pad(ins[0][:, :, ::l.stride, ::l.stride], (0, 0, 0, 0, p, p))
        else:
            raise ValueError(f"{l.name}: unknown op {l.op!r}")
        vals[l.name] = y
    return vals[a.output]
