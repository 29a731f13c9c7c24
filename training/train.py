"""Command line: train / binarize / refine / pattern / eval / export-val.

The built-in architectures (`--arch ID`: seprt.arch ids) are the
`training.models` modules, trained, binarized (`training.pattern`) and saved
(module checkpoints, `training/modelckpt.py`) like any other module; `--ckpt`
and `--init` also read the zoo's checkpoints (models/*.pt) as those modules.

    python -m training train --arch resnet20 --epochs 60 --out models/resnet20-full.pt
    python -m training binarize --ckpt models/resnet20-full.pt --mode all --out models/resnet20-bipattern.pt
    python -m training refine --ckpt models/resnet20-bipattern.pt --epochs 15 --out models/resnet20-refined.pt
    python -m training eval --ckpt models/resnet20-refined.pt
    python -m training export-val --out val/

Any nn.Module on the user's own images (training/generic.py, docs/training.md):

    python -m training train --model mynet.py:MyNet --data photos/ --input-size 64 64 --epochs 30 --out full.pt
    python -m training pattern --init full.pt --data photos/ --method {refine,ste} --epochs 5 --out pattern.pt

`train` and `refine` are resumable: after every epoch the weights go to the
checkpoint (--out) and the optimizer/resume state to ``<out>.state.pt``
(both written atomically). Rerunning the same command continues from the
last finished epoch; a command with different settings is refused.

Under ``torchrun --nproc_per_node N python -m training train ...`` the same
code runs DistributedDataParallel on CPU (gloo): --batch-size stays the
global batch, each rank sees its DistributedSampler share, only rank 0
evaluates and writes files.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from seprt import arch as arch_mod
from seprt import variants

from . import checkpoint as ckpt_mod
from . import data as data_mod
from . import generic, modelckpt, models, pattern, spec as spec_mod


# ------------------------------------------------------------------ helpers

class Dist:
    """Rank/world info; initialises gloo when launched by torchrun."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("gloo")
        self.main = self.rank == 0

    def barrier(self):
        if self.world > 1:
            dist.barrier()

    def broadcast_object(self, obj):
        if self.world == 1:
            return obj
        lst = [obj]
        dist.broadcast_object_list(lst, src=0)
        return lst[0]

    def close(self):
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def log(d: Dist, *a):
    if d.main:
        print(*a, flush=True)


def set_threads(n: int) -> None:
    torch.set_num_threads(max(1, n))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (e.g. in tests running several commands)
        pass


def load_data(args, d: Dist, labels, size):
    """Rank 0 decodes/caches first, the other ranks then read the cache."""
    kw = dict(size=tuple(size), labels=list(labels), cache_dir=args.cache_dir or None, progress=d.main)
    if d.main:
        ds = data_mod.load(args.data, **kw)
    d.barrier()
    if not d.main:
        ds = data_mod.load(args.data, **kw)
    if ds.skipped:
        log(d, f"warning: {ds.skipped} undecodable image(s) skipped in {args.data}")
    return ds


@torch.no_grad()
def evaluate(model: nn.Module, batches) -> dict:
    """Top-1/top-5 accuracy and mean cross-entropy over all batches."""
    net = pattern.unwrap(model)
    was = net.training
    net.eval()
    n = c1 = c5 = 0
    loss = 0.0
    for x, y in batches:
        out = net(x)
        loss += float(F.cross_entropy(out, y, reduction="sum"))
        top = out.topk(min(5, out.shape[1]), 1).indices
        c1 += int((top[:, 0] == y).sum())
        c5 += int((top == y[:, None]).any(1).sum())
        n += len(y)
    net.train(was)
    return {"top1": c1 / max(n, 1), "top5": c5 / max(n, 1), "loss": loss / max(n, 1), "n": n}


def lr_at(cfg: dict, step: int, steps_per_epoch: int) -> float:
    total = cfg["epochs"] * steps_per_epoch
    warm = int(cfg["warmup_epochs"] * steps_per_epoch)
    if step < warm:
        return cfg["lr"] * (step + 1) / warm
    if cfg["schedule"] == "cosine":
        t = (step - warm) / max(1, total - warm)
        return cfg["lr"] * 0.5 * (1 + math.cos(math.pi * t))
    e = step / steps_per_epoch  # step: /10 at 50 % and 75 % of the epochs
    return cfg["lr"] * (0.1 ** ((e >= 0.5 * cfg["epochs"]) + (e >= 0.75 * cfg["epochs"])))


def cpu_has_bf16() -> bool:
    """True if the CPU does bf16 arithmetic natively (avx512_bf16 or AMX), so
    oneDNN's bf16 convolutions are fast rather than emulated."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_amp(amp: str | None) -> str | None:
    """--amp auto|bf16|off -> "bf16" or None (fp32). auto = bf16 where the CPU
    supports it natively (measured 1.6x faster on resnet20, docs/results.md
    "Training speed"), else fp32."""
    if amp in (None, "off"):
        return None
    if amp == "auto":
        return "bf16" if cpu_has_bf16() else None
    return amp


def autocast(amp: str | None):
    """Mixed precision for the training forward pass (weights, optimizer and
    evaluation stay float32)."""
    import contextlib
    if amp == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def state_path(out: str) -> str:
    return (out[:-3] if out.endswith(".pt") else out) + ".state.pt"


# settings that may change between sessions of one run: the compute precision
# (weights and optimizer state are float32 either way); each epoch's history
# record says which one ran.
RESUME_FREE = {"amp"}
# settings added after runs were started: a saved state without the key ran
# with this value.
RESUME_DEFAULTS = {"ema": 0.0}


def _differences(saved: dict, now: dict) -> list[str]:
    keys = sorted((set(saved) | set(now)) - RESUME_FREE)
    return [k for k in keys if saved.get(k, RESUME_DEFAULTS.get(k)) != now.get(k, RESUME_DEFAULTS.get(k))]


def lock_output(out: str):
    """Hold an exclusive lock on <out>.lock for this process's lifetime so two
    runs never write the same checkpoint; SystemExit if another run holds it."""
    import fcntl
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    f = open(state_path(out)[:-len(".state.pt")] + ".lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        raise SystemExit(f"error: another process (pid {f.read().strip() or '?'}) is already writing {out}")
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return f


def check_resume(out: str, cfg: dict, force: bool):
    """The saved resume state for `out` if compatible, None to start fresh;
    SystemExit with a clear message if the settings differ."""
    sp = state_path(out)
    if force:
        return None
    if not os.path.exists(sp):
        if os.path.exists(out):
            raise SystemExit(f"error: {out} exists but has no resume state {sp}; refusing to overwrite it "
                             f"(use --force to train from scratch)")
        return None
    st = torch.load(sp, map_location="cpu", weights_only=True)
    diff = _differences(st["config"], cfg)
    if diff:
        was = ", ".join(f"{k}={st['config'].get(k, RESUME_DEFAULTS.get(k))!r}" for k in diff)
        now = ", ".join(f"{k}={cfg.get(k)!r}" for k in diff)
        raise SystemExit(f"error: refusing to resume {out}: its state {sp} (epoch {st['epoch']}/"
                         f"{st['config'].get('epochs')}) was made with {was}, but this command asks {now}; "
                         f"rerun with the same settings to continue, or use --force / another --out to start over")
    return st


def upgrade_legacy_state(st: dict, model: nn.Module) -> dict:
    """A resume state written before the built-in archs became modules (the
    layer-list interpreter's keys ``layers.<name>.weight|pattern|alpha|bn.*``)
    -> the same state for `model` (its training.models module, pattern convs
    already swapped): weights renamed (a frozen pattern becomes the
    PatternConv2d weight, whose sign it is), optimizer state moved to the
    same parameters by name. SystemExit if they do not correspond."""
    arch_id = st["config"].get("arch")
    names = models.zoo_name_map(arch_id) if arch_id in arch_mod.ARCH_IDS else {}
    rename = {}
    for layer, (mod, bn) in names.items():
        p = "layers." + layer.replace(".", "__") + "."
        rename.update({p + "weight": mod + ".weight", p + "bias": mod + ".bias", p + "pattern": mod + ".weight",
                       p + "alpha": mod + ".alpha"})
        if bn is not None:
            rename.update({f"{p}bn.{k}": f"{bn}.{k}" for k in
                           ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")})
    old_sd = st["model"]
    sd = {rename.get(k, k): v for k, v in old_sd.items()}
    own = model.state_dict()
    old_params = [k for k in old_sd if k.rsplit(".", 1)[-1] in ("weight", "bias", "alpha")
                  and not (k.endswith(".weight") and k[:-len("weight")] + "pattern" in old_sd)]
    new_params = [n for n, p in model.named_parameters() if p.requires_grad]
    if set(sd) != set(own) or sorted(rename.get(k) or k for k in old_params) != sorted(new_params):
        raise SystemExit(f"error: the resume state was written by an older seprt for {arch_id!r} and does not map "
                         f"onto its training.models module; rerun with --force (or another --out) to start over")
    index = {n: i for i, n in enumerate(new_params)}
    opt = st["optimizer"]
    old_to_new = {i: index[rename[k]] for i, k in enumerate(old_params)}
    groups = [dict(g, params=sorted(old_to_new[i] for i in g["params"])) for g in opt["param_groups"]]
    opt = {"state": {old_to_new[i]: v for i, v in opt["state"].items()}, "param_groups": groups}
    return dict(st, model=sd, optimizer=opt)


# ------------------------------------------------------------------ fitting

class WeightEMA:
    """Exponential moving average of a module's whole state_dict: parameters
    and the floating-point buffers (BN running_mean/var) are averaged, integer
    buffers (num_batches_tracked) copied. Bias-corrected, so it is a weighted
    average of the states seen so far, never of the initial weights:
    after update t, ema = sum_i decay^(t-i) * w_i / sum_i decay^(t-i).

        ema = WeightEMA(model, 0.999)
        ... opt.step(); ema.update(step + 1)      # step + 1 = updates so far
        evaluate(ema.module, val_batches)
    """

    def __init__(self, model: nn.Module, decay: float):
        import copy
        self.decay = decay
        self.module = copy.deepcopy(pattern.unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._src = pattern.unwrap(model)

    @torch.no_grad()
    def update(self, t: int) -> None:
        """Fold in the model's current state as update number t (1, 2, ...)."""
        d = self.decay
        w_old = d * (1 - d ** (t - 1)) / (1 - d ** t)   # weight of the average so far (0 at t = 1)
        src = self._src.state_dict()
        for k, v in self.module.state_dict().items():
            if v.is_floating_point():
                v.lerp_(src[k], 1 - w_old)
            else:
                v.copy_(src[k])


def fit(model: nn.Module, cfg: dict, args, d: Dist, train_ds, val_ds, preprocess: dict, *, stage: str,
        save_checkpoint, teacher: nn.Module | None = None, prior_history: list | None = None,
        before_first_epoch=None) -> dict:
    """Shared train/refine loop with per-epoch atomic checkpoint + state.

    `model` is any nn.Module (a training.models module or the user's own);
    `save_checkpoint(model, history, val_top1)` writes the checkpoint;
    `stage` names the epochs in the history."""
    out = args.out
    if not 0 <= cfg.get("ema", 0) < 1:
        raise SystemExit(f"error: --ema {cfg['ema']} is not a decay in [0, 1) (e.g. 0.999; 0 = off)")
    lock = lock_output(out) if d.main else None  # noqa: F841 (held until return)
    st = check_resume(out, cfg, args.force)
    if st is not None and st.get("finished"):
        log(d, f"{out}: already finished ({st['epoch']}/{cfg['epochs']} epochs); nothing to do")
        return st
    mean, std = preprocess["mean"], preprocess["std"]
    per_rank = cfg["batch_size"] // d.world
    if per_rank * d.world != cfg["batch_size"]:
        raise SystemExit(f"error: --batch-size {cfg['batch_size']} is not divisible by {d.world} processes")
    train_b = data_mod.Batches(train_ds, mean, std, per_rank, train=True, seed=cfg["seed"],
                               rank=d.rank, world_size=d.world)
    val_b = data_mod.Batches(val_ds, mean, std, 500, train=False)
    steps = len(train_b)
    if steps == 0:
        raise SystemExit(f"error: {len(train_ds)} training images is less than one batch of {per_rank}")

    history = list(prior_history or [])
    start = 0
    if st is not None:
        if any(k.startswith("layers.") for k in st["model"]):
            st = upgrade_legacy_state(st, model)
        model.load_state_dict(st["model"])
        history = st["history"]
        start = st["epoch"]
        log(d, f"resuming {out} after epoch {start}/{cfg['epochs']}")
    elif before_first_epoch is not None:
        before_first_epoch(model, train_b)
        history = list(prior_history or [])       # it may have recorded a step (e.g. BiPattern accuracy)
    model = model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    # weight decay on every trainable tensor (weights, BN, alpha, fc bias):
    # the ResNet CIFAR recipe; with BN after every conv the scale is free anyway.
    opt = torch.optim.SGD(params, lr=cfg["lr"], momentum=0.9, nesterov=True, weight_decay=cfg["wd"])
    if st is not None:
        opt.load_state_dict(st["optimizer"])
    ema = WeightEMA(model, cfg["ema"]) if cfg.get("ema") else None
    if ema is not None and st is not None:
        ema.module.load_state_dict(st["ema"])
    train_model: nn.Module = model
    if d.world > 1:
        train_model = nn.parallel.DistributedDataParallel(model)
    if teacher is not None:
        teacher = teacher.to(memory_format=torch.channels_last).eval()
    crit = nn.CrossEntropyLoss(label_smoothing=cfg["label_smoothing"])
    amp = resolve_amp(getattr(args, "amp", "off"))
    if amp:
        log(d, f"mixed precision: {amp} autocast for the training forward pass (--amp off for float32)")
    from tqdm import tqdm

    res = None
    for epoch in range(start, cfg["epochs"]):
        t0 = time.time()
        train_b.set_epoch(epoch)
        train_model.train()
        tot_loss = torch.zeros(()); tot_correct = torch.zeros(()); tot_n = 0
        bar = tqdm(train_b, total=steps, desc=f"{os.path.basename(out)} epoch {epoch + 1}/{cfg['epochs']}",
                   disable=not d.main or args.quiet, mininterval=args.progress_interval, leave=False)
        for i, (x, y) in enumerate(bar):
            lr = lr_at(cfg, epoch * steps + i, steps)
            for g in opt.param_groups:
                g["lr"] = lr
            with autocast(amp):
                logits = train_model(x)
                if teacher is not None:
                    with torch.no_grad():
                        tl = teacher(x)
            logits = logits.float()
            loss = crit(logits, y)
            if teacher is not None:
                T = cfg["kd_t"]
                kd = F.kl_div(F.log_softmax(logits / T, 1), F.log_softmax(tl.float() / T, 1),
                              reduction="batchmean", log_target=True) * T * T
                loss = (1 - cfg["kd_alpha"]) * loss + cfg["kd_alpha"] * kd
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update(epoch * steps + i + 1)
            with torch.no_grad():
                tot_loss += loss.detach() * len(y)
                tot_correct += (logits.argmax(1) == y).sum()
                tot_n += len(y)
            if d.main and i % 20 == 0:
                bar.set_postfix(refresh=False, loss=f"{float(tot_loss) / tot_n:.3f}", acc=f"{float(tot_correct) / tot_n:.3f}",
                                lr=f"{lr:.4f}")
        bar.close()
        train_s = time.time() - t0
        if d.main:
            # with --ema the EMA weights are validated and written; the live
            # weights are validated too (val_top1_live) to show what EMA adds
            out_model = model if ema is None else ema.module
            ev = evaluate(out_model, val_b)
            rec = {"stage": stage, "epoch": epoch + 1, "train_loss": float(tot_loss) / tot_n,
                   "train_top1": float(tot_correct) / tot_n, "val_top1": ev["top1"], "val_top5": ev["top5"],
                   "val_loss": ev["loss"], "lr_end": lr, "train_seconds": round(train_s, 1),
                   "world_size": d.world, "amp": amp or "fp32", "ema": cfg.get("ema", 0.0)}
            if ema is not None:
                live = evaluate(model, val_b)
                rec.update(val_top1_live=live["top1"], val_top5_live=live["top5"])
            rec["seconds"] = round(time.time() - t0, 1)
            history.append(rec)
            finished = epoch + 1 == cfg["epochs"]
            save_checkpoint(out_model, history, ev["top1"])
            state = {"config": cfg, "epoch": epoch + 1, "finished": finished,
                     "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
                     "optimizer": opt.state_dict(), "history": history}
            if ema is not None:
                state["ema"] = {k: v.clone() for k, v in ema.module.state_dict().items()}
            ckpt_mod.atomic_save(state, state_path(out))
            what = "" if ema is None else f" (EMA {cfg['ema']}; live weights {live['top1']:.4f})"
            print(f"[{stage}] {os.path.basename(out)} epoch {epoch + 1}/{cfg['epochs']}: "
                  f"train loss {rec['train_loss']:.4f} top1 {rec['train_top1']:.4f} | "
                  f"validation top1 {ev['top1']:.4f} top5 {ev['top5']:.4f}{what} | {rec['seconds']:.0f} s "
                  f"(train {train_s:.0f} s, {train_s / steps:.3f} s/step)", flush=True)
            res = {"epoch": epoch + 1, "history": history}
        d.barrier()
        if args.stop_after and epoch + 1 - start >= args.stop_after:
            log(d, f"stopping after {args.stop_after} epoch(s) as asked (--stop-after); rerun to continue")
            break
    return res or {}


# ------------------------------------------------------------------ commands

def _common_train_cfg(args, **extra) -> dict:
    cfg = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "wd": args.wd,
           "schedule": args.schedule, "warmup_epochs": args.warmup_epochs,
           "label_smoothing": args.label_smoothing, "ema": args.ema, "seed": args.seed,
           "data": os.path.abspath(args.data), "kd_alpha": None, "kd_t": None}
    cfg.update(extra)
    return cfg


def _module_ckpt(path: str, what: str) -> dict:
    try:
        return modelckpt.read(path)
    except ValueError as e:
        raise SystemExit(f"error: {what}: {e}") from None


def _arch_of(ck: dict) -> str | None:
    """The seprt.arch id of a checkpoint's model, if it is a built-in one."""
    return {spec: a for a, spec in models.ARCH_TO_SPEC.items()}.get(ck["model"])


def _saver(args, spec: str, kwargs: dict, labels, pre: dict, stage: str, method, cfg: dict):
    def save(m, history, top1):
        modelckpt.save(modelckpt.make(m, spec=spec, model_kwargs=kwargs, labels=labels, preprocess=pre, stage=stage,
                                      method=method, val_top1=top1, history=history, train_config=cfg), args.out)
    return save


def cmd_train(args, d: Dist):
    if args.model:
        return generic.cmd_train_model(args, d)
    a = arch_mod.get(args.arch)
    spec = models.ARCH_TO_SPEC[a.id]
    torch.manual_seed(args.seed)
    model = models.build(args.arch)
    prior, init = [], None
    if args.init:
        # continue a Full checkpoint under a new schedule (weights only; the
        # optimizer and lr schedule start fresh from this command's settings)
        src = _module_ckpt(args.init, "--init")
        if src["model"] != spec or src["stage"] != "full":
            raise SystemExit(f"error: --init {args.init} is a {src['stage']} {src['model']} checkpoint; "
                             f"train --arch {args.arch} continues only a Full {args.arch} checkpoint")
        model.load_state_dict(src["state_dict"])
        prior, init = src["history"], os.path.abspath(args.init)
    binarize = None
    if args.binary_from_start:
        pattern.binarize_modules(model, args.binary_from_start, "ste")
        binarize = args.binary_from_start
    ds = load_data(args, d, a.labels, a.input_shape[:2])
    train_ds, val_ds = ds.split("train"), ds.split("val")
    mean, std = data_mod.mean_std(train_ds.images)
    pre = {"size": list(a.input_shape[:2]), "resize": "stretch", "mean": mean, "std": std, "channel_order": "RGB"}
    cfg = _common_train_cfg(args, command="train", arch=args.arch, binary_from_start=binarize, init=init,
                            train_images=len(train_ds), val_images=len(val_ds))
    if init and pre != src["preprocess"]:
        raise SystemExit(f"error: --init {args.init} was trained with preprocessing {src['preprocess']}, "
                         f"this data gives {pre}")
    log(d, f"train {args.arch} ({spec}): {a.params()} weights, {len(train_ds)} train / {len(val_ds)} "
           f"validation images, {d.world} process(es) x {torch.get_num_threads()} thread(s)")
    # ste training from scratch ends as a binarized model: stage "pattern",
    # method "ste"; train_config.binary_from_start says which convs.
    save = _saver(args, spec, {}, a.labels, pre, "pattern" if binarize else "full", "ste" if binarize else None, cfg)
    fit(model, cfg, args, d, train_ds, val_ds, pre, stage="refined" if binarize else "full", save_checkpoint=save,
        prior_history=prior)


def cmd_refine(args, d: Dist):
    src = _module_ckpt(args.ckpt, "--ckpt")
    if src["stage"] == "full":
        raise SystemExit(f"error: {args.ckpt} is a Full checkpoint; binarize it first (python -m training binarize)")
    model = modelckpt.build_model(src).train()
    names = pattern.binarize_modules(model, src["binarized"], "refine")      # patterns frozen, alpha = |W|
    teacher = None
    if args.teacher:
        tck = _module_ckpt(args.teacher, "--teacher")
        if tck["model"] != src["model"] or tck["preprocess"] != src["preprocess"]:
            raise SystemExit(f"error: teacher {args.teacher} has a different model or preprocess than {args.ckpt}")
        teacher = modelckpt.build_model(tck)
        for p in teacher.parameters():
            p.requires_grad_(False)
    pre = src["preprocess"]
    ds = load_data(args, d, src["labels"], pre["size"])
    train_ds, val_ds = ds.split("train"), ds.split("val")
    binarize = src["train_config"].get("binarize") or src["train_config"].get("zoo_binarize")
    cfg = _common_train_cfg(args, command="refine", arch=_arch_of(src), init=os.path.abspath(args.ckpt),
                            binarize=binarize, teacher=os.path.abspath(args.teacher) if args.teacher else None,
                            bn_reestimate=args.bn_reestimate, train_images=len(train_ds), val_images=len(val_ds))
    if args.teacher:
        cfg.update(kd_alpha=args.kd_alpha, kd_t=args.kd_t)
    before = None
    if args.bn_reestimate:
        def before(m, batches):
            pattern.reestimate_bn(m, batches, args.bn_batches)
    log(d, f"refine {src['model']}: {len(names)} pattern convs frozen; training alpha, real convs, BN, fc "
           f"(start: validation top1 {src['val_top1']})")
    save = _saver(args, src["model"], src["model_kwargs"], src["labels"], pre, "pattern", "refine", cfg)
    fit(model, cfg, args, d, train_ds, val_ds, pre, stage="refined", save_checkpoint=save, teacher=teacher,
        prior_history=src["history"], before_first_epoch=before)


def cmd_binarize(args, d: Dist):
    src = _module_ckpt(args.ckpt, "--ckpt")
    if src["stage"] != "full":
        raise SystemExit(f"error: {args.ckpt} is stage {src['stage']!r}; binarize needs a Full checkpoint")
    model = modelckpt.build_model(src)
    qerr = pattern.quantization_error(model)
    names = pattern.binarize_modules(model, args.mode, "refine")
    pre = src["preprocess"]
    ds = load_data(args, d, src["labels"], pre["size"])
    val_b = data_mod.Batches(ds.split("val"), pre["mean"], pre["std"], 500, train=False)
    if args.bn_reestimate:
        tb = data_mod.Batches(ds.split("train"), pre["mean"], pre["std"], 128, train=True, seed=args.seed)
        pattern.reestimate_bn(model, tb, args.bn_batches)
    ev = evaluate(model, val_b)
    rec = {"stage": "bipattern", "mode": args.mode, "binarized_convs": len(names),
           "bn_reestimate": bool(args.bn_reestimate), "val_top1": ev["top1"], "val_top5": ev["top5"],
           "val_loss": ev["loss"], "quant_error": qerr}
    cfg = {"command": "binarize", "arch": _arch_of(src), "from": os.path.abspath(args.ckpt), "mode": args.mode,
           "binarize": args.mode, "bn_reestimate": bool(args.bn_reestimate), "data": os.path.abspath(args.data),
           "full_train_config": src["train_config"]}
    ck = modelckpt.make(model, spec=src["model"], model_kwargs=src["model_kwargs"], labels=src["labels"],
                        preprocess=pre, stage="bipattern", method="refine", val_top1=ev["top1"],
                        history=src["history"] + [rec], train_config=cfg)
    if d.main:
        modelckpt.save(ck, args.out)
        print(f"binarized {len(names)} convs ({args.mode}) of {src['model']}: BiPattern validation top1 "
              f"{ev['top1']:.4f} top5 {ev['top5']:.4f} on {ev['n']} validation images "
              f"(Full: validation top1 {src['val_top1']}) -> {args.out}")
        for k, v in qerr.items():
            print(f"  quantization error {k}: {v['error']:.3e} over {v['filters']} filters "
                  f"(mean W^2 {v['mean_sq_weight']:.3e})")


def cmd_eval(args, d: Dist):
    ck = _module_ckpt(args.ckpt, "--ckpt")
    tc = ck["train_config"]
    if not (tc.get("arch") or tc.get("converted_from_zoo_arch")):
        return generic.cmd_eval_module(args, d, ck)
    # the zoo's runs (train/binarize/refine --arch, models/*.pt): the shared archive's split
    model = modelckpt.build_model(ck).to(memory_format=torch.channels_last)
    pre = ck["preprocess"]
    ds = load_data(args, d, ck["labels"], pre["size"]).split(args.split)
    ev = evaluate(model, data_mod.Batches(ds, pre["mean"], pre["std"], 500, train=False))
    what = {"val": "validation accuracy (files 4500-4999 of each class)", "all": "accuracy on all images",
            "train": "TRAINING-split accuracy"}[args.split]
    log(d, f"{args.ckpt} ({ck['model']}, stage {ck['stage']}, {len(ck['binarized'])} pattern convs): {what} on "
           f"{ev['n']} images of {args.data}: top1 {ev['top1']:.4f} top5 {ev['top5']:.4f} loss {ev['loss']:.4f}")
    return ev


def cmd_export_val(args, d: Dist):
    if not d.main:
        return
    n = data_mod.export_val(args.data, args.out, split=args.split)
    print(f"wrote {n} {args.split} images (original bytes) to {args.out}")


def cmd_live_weights(args, d: Dist):
    """With --ema, fit() writes the EMA weights; its state file keeps the live
    ones. This writes the live weights as a checkpoint like the EMA one (same
    model, binarized convs, labels, history; val_top1 = the last epoch's
    val_top1_live). For STE the EMA of latent weights can trail the live
    model (docs/results.md)."""
    if os.path.exists(args.out) and not args.force:
        raise ValueError(f"{args.out} exists (use --force to replace it)")
    ck = _module_ckpt(args.ckpt, "--ckpt")
    st = torch.load(state_path(args.ckpt), map_location="cpu", weights_only=False)
    if not st.get("config", {}).get("ema") or "model" not in st:
        raise ValueError(f"{state_path(args.ckpt)}: not the state of a run with --ema")
    model = spec_mod.build(ck["model"], ck["model_kwargs"])
    if ck["binarized"]:
        pattern.binarize_modules(model, ck["binarized"], ck["method"] or "refine")
    model.load_state_dict(st["model"], strict=True)
    hist = list(ck["history"])
    top1 = hist[-1].get("val_top1_live") if hist else None
    cfg = {**ck["train_config"], "weights": "live (not the EMA)"}
    out = modelckpt.make(model.eval(), spec=ck["model"], model_kwargs=ck["model_kwargs"], labels=ck["labels"],
                         preprocess=ck["preprocess"], stage=ck["stage"], method=ck["method"], val_top1=top1,
                         history=hist, train_config=cfg)
    modelckpt.save(out, args.out)
    print(f"wrote {args.out}: live weights of {args.ckpt} (epoch {st['epoch']}, validation top1 {top1})")


def cmd_qerr(args, d: Dist):
    ck = _module_ckpt(args.ckpt, "--ckpt")
    model = modelckpt.build_model(ck)
    for k, v in pattern.quantization_error(model, skip=ck["binarized"]).items():
        print(f"{k}: error {v['error']:.4e} over {v['filters']} filters (mean W^2 {v['mean_sq_weight']:.4e})")


# ------------------------------------------------------------------ CLI

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(s):
        s.add_argument("--data", default=data_mod.DEFAULT_DATA,
                       help="CIFAR-style .tar.gz or <class>/<image> directory (default: %(default)s)")
        s.add_argument("--cache-dir", default=data_mod.DEFAULT_CACHE, help="decoded-image cache ('' = none)")
        s.add_argument("--threads", type=int, default=2, help="torch threads per process (default 2)")
        s.add_argument("--seed", type=int, default=0)

    def fitting(s, lr, wd, epochs):
        s.add_argument("--epochs", type=int, default=epochs)
        s.add_argument("--out", required=True, help="checkpoint to write (resume state goes to <out>.state.pt)")
        s.add_argument("--lr", type=float, default=lr)
        s.add_argument("--batch-size", type=int, default=128, help="global batch size (default 128)")
        s.add_argument("--wd", type=float, default=wd)
        s.add_argument("--schedule", choices=("cosine", "step"), default="cosine")
        s.add_argument("--warmup-epochs", type=float, default=None if lr is None else (1.0 if lr >= 0.05 else 0.0))
        s.add_argument("--label-smoothing", type=float, default=0.0)
        s.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                       help="keep a bias-corrected exponential moving average of the weights and BN statistics "
                            "(updated every step, e.g. 0.999); validate it and write it as --out "
                            "(default 0 = off)")
        s.add_argument("--force", action="store_true", help="ignore any saved state and start over")
        s.add_argument("--stop-after", type=int, default=0, help="stop after this many epochs of this invocation")
        s.add_argument("--quiet", action="store_true", help="no progress bar")
        s.add_argument("--progress-interval", type=float, default=10.0, help="seconds between bar updates")
        s.add_argument("--amp", choices=("auto", "bf16", "off"), default="auto",
                       help="mixed precision of the training forward pass: auto (default) = bf16 autocast "
                            "where the CPU has native bf16 (avx512_bf16/AMX), else float32; off = float32. "
                            "Weights, optimizer and validation stay float32; a resumed run may change it")

    # Training recipe for a CPU budget of ~60 epochs: SGD + Nesterov momentum
    # 0.9, batch 128, lr 0.1 with 1 warm-up epoch then per-step cosine decay
    # to 0 (cosine reaches a better end point than the paper's step schedule
    # when the epoch budget is short, since no epochs are spent on a flat
    # low-lr tail), weight decay 5e-4 (short schedules and small nets on
    # CIFAR-10 generalise better with 5e-4 than the paper's 1e-4), no label
    # smoothing by default (keeps plain cross-entropy logits, which the
    # BiPattern/Refined comparison and distillation use).
    s = sub.add_parser("train", help="train a Full model (or --binary-from-start)")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--arch", help="a built-in architecture id: its training.models module on the CIFAR-style "
                                  "--data (files 4500-4999 of each class validate)")
    g.add_argument("--model", help="SPEC of any nn.Module: package.module:callable or path/file.py:callable "
                                   "(module checkpoint format, docs/training.md)")
    common(s)
    fitting(s, lr=0.1, wd=5e-4, epochs=60)
    generic.add_model_args(s)
    generic.add_data_args(s)
    s.add_argument("--binary-from-start", nargs="?", const="all", default=None, choices=variants.BINARIZE_MODES,
                   help="train with binary patterns from the start (STE); 'all' (default) or 'prb'")
    s.add_argument("--init", help="Full checkpoint of the same arch to continue from, under this command's "
                                  "schedule (fresh optimizer), e.g. to finish a cut-off run with a shorter decay")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("binarize", help="Full -> BiPattern (no training) and report its validation accuracy")
    s.add_argument("--ckpt", required=True)
    s.add_argument("--mode", choices=variants.BINARIZE_MODES, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--bn-reestimate", action="store_true", help="recompute BN statistics after binarizing")
    s.add_argument("--bn-batches", type=int, default=100)
    common(s)
    s.set_defaults(func=cmd_binarize)

    # Refine: the pattern is frozen (a buffer); alpha, real convs, BN and fc
    # train. lr 0.01: the weights start close to a good solution.
    s = sub.add_parser("refine", help="fine-tune a BiPattern model (patterns frozen)")
    s.add_argument("--ckpt", required=True)
    common(s)
    fitting(s, lr=0.01, wd=1e-4, epochs=15)
    s.add_argument("--teacher", help="Full checkpoint to distil from")
    s.add_argument("--kd-alpha", type=float, default=0.5, help="weight of the distillation loss")
    s.add_argument("--kd-t", type=float, default=4.0, help="distillation temperature")
    s.add_argument("--bn-reestimate", action="store_true", help="recompute BN statistics before fine-tuning")
    s.add_argument("--bn-batches", type=int, default=100)
    s.set_defaults(func=cmd_refine)

    s = sub.add_parser("pattern", help="binarize any Full module checkpoint and refine (frozen patterns) or STE")
    s.add_argument("--init", required=True, help="Full model: a module checkpoint (train --model), a zoo checkpoint, "
                                                 "or a plain state_dict of --model (then give --input-size too)")
    s.add_argument("--model", help="SPEC (default: the one --init records)")
    s.add_argument("--method", choices=pattern.METHODS, required=True,
                   help="refine: patterns frozen, distilled from --init; ste: patterns learned (straight-through)")
    s.add_argument("--binarize", default="all",
                   help="which k x k convs: 'all' (default), a preset of the model (e.g. prb, inner), or "
                        "comma-separated module-name globs, '!glob' to exclude (e.g. 'all,!conv1')")
    common(s)
    fitting(s, lr=None, wd=None, epochs=5)
    s.set_defaults(warmup_epochs=None)
    s.add_argument("--teacher", help="Full module checkpoint to distil from (default: --init)")
    s.add_argument("--kd-alpha", type=float, default=None, help="distillation weight (refine 0.5, ste 0)")
    s.add_argument("--kd-t", type=float, default=4.0)
    s.add_argument("--bn-reestimate", action=argparse.BooleanOptionalAction, default=None,
                   help="recompute BN statistics after binarizing (default: on for refine, off for ste)")
    s.add_argument("--bn-batches", type=int, default=100)
    generic.add_model_args(s, pattern_cmd=True)
    generic.add_data_args(s)
    s.set_defaults(func=generic.cmd_pattern)

    s = sub.add_parser("import-zoo", help="a zoo checkpoint (models/*.pt) -> module checkpoint of training.models")
    s.add_argument("ckpt")
    s.add_argument("--out", required=True)
    s.add_argument("--force", action="store_true")
    s.set_defaults(func=generic.cmd_import_zoo, threads=1)

    s = sub.add_parser("export-zoo", help="a module checkpoint of a built-in arch -> zoo checkpoint "
                                          "(the format of models/*.pt; every command reads both)")
    s.add_argument("ckpt")
    s.add_argument("--out", required=True)
    s.add_argument("--force", action="store_true")
    s.set_defaults(func=generic.cmd_export_zoo, threads=1)

    s = sub.add_parser("eval", help="validation top-1/top-5 of a checkpoint")
    s.add_argument("--ckpt", required=True)
    s.add_argument("--split", choices=("val", "all", "train"), default="val",
                   help="val (default): files 4500-4999 of each class (zoo checkpoints) or --split-rule's "
                        "validation share (module checkpoints); all: every image (e.g. an exported folder)")
    common(s)
    generic.add_data_args(s)
    s.set_defaults(func=cmd_eval, split_rule=None, val_fraction=None, split_seed=None)   # None: the checkpoint's

    s = sub.add_parser("export-val", help="write the validation split as <class>/<file>.jpg (original bytes)")
    s.add_argument("--out", required=True, help="directory, or .tar / .tar.gz")
    s.add_argument("--split", choices=("val", "all", "calib"), default="val",
                   help="val (default); all; calib: files 0000-0025 of each class (training split), "
                        "the calibration images for BQ / TFLite int8")
    common(s)
    s.set_defaults(func=cmd_export_val)

    s = sub.add_parser("live-weights", help="the live (not EMA) weights of a run with --ema, from its state "
                                            "file, as a checkpoint")
    s.add_argument("--ckpt", required=True, help="the checkpoint the run wrote (its .state.pt sits beside it)")
    s.add_argument("--out", required=True)
    s.add_argument("--force", action="store_true")
    s.set_defaults(func=cmd_live_weights, threads=1)

    s = sub.add_parser("qerr", help="the paper's Table 1 quantization error of a checkpoint's real convs")
    s.add_argument("--ckpt", required=True)
    common(s)
    s.set_defaults(func=cmd_qerr)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    set_threads(args.threads)
    d = Dist()
    try:
        args.func(args, d)
    except ValueError as e:   # includes SpecError, bad data, bad checkpoints
        if d.main:
            print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        d.close()
    return 0
