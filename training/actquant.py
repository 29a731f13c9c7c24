"""Quantization-aware refinement for low-bit activations (issue 16, item 5).

    python -m training.actquant --ckpt models/resnet20-ste.pt --teacher models/resnet20-full.pt \\
        --act-bits 4 --calib CALIB --epochs 3 -o models/resnet20-ste-a4.pt
    python -m converters seprt models/resnet20-ste-a4.pt -o resnet20-ste-a4-BQ.bin --variant BQ \\
        --act-bits 4 --calib CALIB --check VAL

`--variant BQ --act-bits N` quantizes every value a binary conv reads (not the
image) to N bits, with the scale and zero point of its range over the
calibration images on the float graph, clipped where the squared
quantization error is least (seprt.variants.calibrate, seprt.quant.ActRange).
This command fine-tunes a pattern checkpoint with those quantizers in the
forward pass:

    x -> (clip(rint(x / s) + z, 0, 2^N - 1) - z) * s       (float32, half to even;
                                                          gradient straight through)

on the input of every conv or linear layer that reads the same tensor as a
binary conv (as the runtime: one quantized copy per value), and with N = 8
on the other inputs of conv and linear layers (the image, 1x1 and fc inputs),
so the model computes what the converted file will, with (s, z)
measured as the converter will measure them: the same images
(converters.convert.load_images, the same --calib-limit), eval mode, the
quantizers off; again before every epoch, as the weights move. Patterns keep
learning (STE), distilled from the Full teacher (CE + KL, T 4, alpha 0.9).
The output is an ordinary pattern checkpoint (stage "pattern", method "ste"),
written after every epoch; its validation accuracy is measured with the
quantizers on.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from seprt.quant import ActRange

from . import pattern


def fake_quant(x: torch.Tensor, scale: float, zero: int, bits: int) -> torch.Tensor:
    """seprt.quant.quantize_act then dequantize, in float32; straight-through gradient."""
    s = torch.tensor(scale, dtype=torch.float32)
    q = torch.clamp(torch.round(x.detach().float() / s) + zero, 0, (1 << bits) - 1)
    return x + ((q - zero) * s - x).detach()


def _layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


@torch.no_grad()
def quantized_inputs(model: nn.Module, x: torch.Tensor, act_bits: int) -> list[tuple[list[str], int]]:
    """Every tensor a conv or linear layer reads, in forward order, as (the layers
    that read it, its bits): act_bits when a binary conv (PatternConv2d) reads it
    and it is not the model's input, else 8 (seprt.variants.calibrate's rule)."""
    seen: dict[int, tuple[torch.Tensor, list[str]]] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, inp, name=n: seen.setdefault(
        id(inp[0]), (inp[0], []))[1].append(name)) for n, m in _layers(model).items()]
    was = model.training
    try:
        model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    binary = set(pattern.pattern_modules(model))
    return [(names, act_bits if t is not x and binary & set(names) else 8) for t, names in seen.values()]


class ActQuant:
    """Fake quantizers on the inputs of `groups` (quantized_inputs) of `model`:
    one (scale, zero) per group, from calibrate(); on while `enabled`."""

    def __init__(self, model: nn.Module, groups: list[tuple[list[str], int]]):
        self.model, self.groups, self.enabled = model, groups, False
        self.qparams: list[tuple[float, int]] = [(1.0, 0)] * len(groups)
        layers = _layers(model)
        for g, (names, _) in enumerate(groups):
            for n in names:
                layers[n].register_forward_pre_hook(self._hook(g))

    def _hook(self, g: int):
        bits = self.groups[g][1]

        def pre(mod, inp):
            if not self.enabled:
                return None
            s, z = self.qparams[g]
            return (fake_quant(inp[0], s, z, bits),) + tuple(inp[1:])
        return pre

    @torch.no_grad()
    def calibrate(self, calib: np.ndarray, batch: int = 8) -> list[tuple[float, int]]:
        """(scale, zero) per group, as the converter computes them: seprt.quant.ActRange
        over `calib` (N, H, W, 3 float32, preprocessed) in batches of 8, channels
        last, eval mode, quantizers off."""
        ranges = [ActRange(bits) for _, bits in self.groups]
        layers = _layers(self.model)

        def watch(g):
            def pre(mod, inp):
                x = inp[0].detach()
                ranges[g].add((x.permute(0, 2, 3, 1) if x.dim() == 4 else x).numpy())
            return pre
        hooks = [layers[names[0]].register_forward_pre_hook(watch(g)) for g, (names, _) in enumerate(self.groups)]
        was, on = self.model.training, self.enabled
        self.enabled = False
        try:
            self.model.eval()
            for i in range(0, len(calib), batch):
                self.model(torch.from_numpy(np.ascontiguousarray(calib[i:i + batch].transpose(0, 3, 1, 2))))
        finally:
            for h in hooks:
                h.remove()
            self.model.train(was)
            self.enabled = on
        for (names, _), r in zip(self.groups, ranges):
            if not r.finite():
                raise ValueError(f"the input of {names[0]} is not finite over the calibration images "
                                 f"(min {r.lo}, max {r.hi}): the model has diverged")
        self.qparams = [r.qparams() for r in ranges]
        return self.qparams


def refine(net: nn.Module, teacher: nn.Module, aq: ActQuant, calib: np.ndarray, train_b, val_b, epochs: int,
           lr: float, wd: float = 5e-4, kd_t: float = 4.0, kd_alpha: float = 0.9, on_epoch=None, log=print) -> list:
    """SGD (nesterov, cosine lr over all epochs) on CE + distillation, the
    quantizers on; before every epoch they are recalibrated. -> per-epoch records."""
    from .train import evaluate
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=wd)
    total = epochs * len(train_b)
    teacher.eval()
    history, step = [], 0
    bits = min(b for _, b in aq.groups)
    for ep in range(epochs):
        t0 = time.time()
        aq.calibrate(calib)
        aq.enabled = True
        seen = correct = skipped = 0
        for s, x, y in pattern.cosine_epoch(net, train_b, opt, lr, step, total, ep):
            out = net(x)
            with torch.no_grad():
                tl = teacher(x)
            loss = (1 - kd_alpha) * F.cross_entropy(out, y) + kd_alpha * pattern.distillation_loss(out, tl, kd_t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            # a non-finite gradient (a channel that 4 bits quantize to one value has no
            # batch variance: each BN then scales the gradient by 1/sqrt(eps)) would
            # wreck the weights: skip that step, as mixed-precision trainers do
            if torch.isfinite(nn.utils.clip_grad_norm_(net.parameters(), float("inf"))):
                opt.step()
            else:
                skipped += 1
            step = s + 1
            seen += len(y)
            correct += int((out.argmax(1) == y).sum())
        aq.calibrate(calib)                       # the ranges the converter will measure on these weights
        ev = evaluate(net, val_b)
        rec = {"stage": f"act{bits}", "epoch": ep + 1, "steps": step, "train_top1": correct / max(seen, 1),
               "val_top1": ev["top1"], "skipped_steps": skipped, "seconds": round(time.time() - t0, 1)}
        history.append(rec)
        if on_epoch is not None:
            on_epoch(history)
        log(f"epoch {ep + 1}/{epochs}: train top1 {rec['train_top1']:.4f} | validation top1 with {bits}-bit "
            f"activations {rec['val_top1']:.4f} | {rec['seconds']:.0f} s"
            + (f" ({skipped} steps with non-finite gradients skipped)" if skipped else ""))
    return history


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.actquant",
                                description="pattern checkpoint -> the same, fine-tuned for low-bit activations")
    p.add_argument("--ckpt", required=True, help="pattern checkpoint (stage 'pattern') to refine")
    p.add_argument("--teacher", required=True, help="its Full checkpoint (distillation)")
    p.add_argument("--act-bits", type=int, choices=(4, 2), default=4)
    p.add_argument("--calib", required=True, metavar="DATA",
                   help="the calibration images the converter will get (folder or tar)")
    p.add_argument("--calib-limit", type=int, default=256, help="as the converter's --calib-limit")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default=None)
    p.add_argument("--cache-dir", default=None, help="decoded-image cache (default: training.data's)")
    p.add_argument("--train-limit", type=int, default=0, help="use only this many training images (smoke runs)")
    p.add_argument("-o", "--out", required=True)
    args = p.parse_args(argv)
    from converters.convert import ConvertError, load_images, preprocess_meta
    from . import data as data_mod, modelckpt
    from .train import evaluate
    torch.set_num_threads(args.threads)
    if os.path.abspath(args.out) in (os.path.abspath(args.ckpt), os.path.abspath(args.teacher)):
        raise SystemExit("error: -o must differ from --ckpt and --teacher (inputs are never overwritten)")
    try:
        ck, tk = modelckpt.read(args.ckpt), modelckpt.read(args.teacher)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if ck["stage"] != "pattern":
        raise SystemExit(f"error: --ckpt {args.ckpt} is a {ck['stage']} checkpoint; this refines a pattern one")
    if tk["stage"] != "full" or tk["model"] != ck["model"] or tk["model_kwargs"] != ck["model_kwargs"]:
        raise SystemExit(f"error: --teacher {args.teacher} is not a Full checkpoint of {args.ckpt}'s model")
    net = modelckpt.build_model(ck, binarized_as_patterns=True)
    for m in pattern.pattern_modules(net).values():
        m.method = "ste"                           # patterns keep learning
        m.weight.requires_grad_(True)
    teacher = modelckpt.build_model(tk)
    try:
        calib, _ = load_images(args.calib, preprocess_meta(ck["preprocess"]), "--calib", args.calib_limit or None)
    except ConvertError as e:
        raise SystemExit(f"error: {e}") from None
    groups = quantized_inputs(net, torch.from_numpy(np.ascontiguousarray(calib[:2].transpose(0, 3, 1, 2))),
                              args.act_bits)
    low = [names for names, bits in groups if bits == args.act_bits]
    if not low:
        raise SystemExit(f"error: {args.ckpt} has no binary conv reading a value (nothing to quantize)")
    aq = ActQuant(net, groups)
    print(f"{len(low)} values quantized to {args.act_bits} bits, read by {sum(map(len, low))} layers, and "
          f"{len(groups) - len(low)} to 8 bits; {len(calib)} calibration images", flush=True)
    ds = data_mod.load(args.data or data_mod.DEFAULT_DATA, size=tuple(ck["preprocess"]["size"]),
                       labels=list(ck["labels"]), cache_dir=args.cache_dir or data_mod.DEFAULT_CACHE)
    mean, std = ck["preprocess"]["mean"], ck["preprocess"]["std"]
    train_b = data_mod.Batches(ds.split("train"), mean, std, args.batch_size, train=True, seed=0)
    val_b = data_mod.Batches(ds.split("val"), mean, std, 500, train=False)
    if args.train_limit:
        train_b.x, train_b.y = train_b.x[:args.train_limit], train_b.y[:args.train_limit]
    try:
        aq.calibrate(calib)
    except ValueError as e:
        raise SystemExit(f"error: {args.ckpt}: {e}") from None
    aq.enabled = True
    before = evaluate(net, val_b)["top1"]
    print(f"{args.ckpt}: validation top1 {ck['val_top1']} (float activations), {before:.4f} with "
          f"{args.act_bits}-bit activations before refinement", flush=True)
    t0 = time.time()
    cfg = {**{k: v for k, v in vars(args).items() if k != "out"}, "command": "actquant",
           "val_top1_before": before, "quantized_values": len(groups)}

    def save(hist):
        cfg["wall_seconds"] = round(time.time() - t0, 1)
        out = modelckpt.make(net, spec=ck["model"], model_kwargs=ck["model_kwargs"], labels=ck["labels"],
                             preprocess=ck["preprocess"], stage="pattern", method="ste",
                             val_top1=hist[-1]["val_top1"], history=list(ck["history"]) + hist, train_config=cfg)
        modelckpt.save(out, args.out)

    try:
        hist = refine(net, teacher, aq, calib, train_b, val_b, args.epochs, args.lr, on_epoch=save,
                      log=lambda s: print(s, flush=True))
    except ValueError as e:                   # diverged: the last good epoch stays written
        raise SystemExit(f"error: {e}") from None
    print(f"wrote {args.out}: validation top1 {hist[-1]['val_top1']:.4f} with {args.act_bits}-bit activations "
          f"(before: {before:.4f})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
