"""Commands for any nn.Module named by a SPEC (see docs/training.md):

    python -m training train   --model SPEC --data DATA --input-size H W --epochs N --out FULL.pt
    python -m training pattern --model SPEC --init FULL.pt --data DATA --method {refine,ste} \\
                               --epochs N --out PATTERN.pt [--binarize WHICH]
    python -m training eval    --ckpt PATTERN.pt --data DATA
    python -m training import-zoo models/resnet20-full.pt --out resnet20-full-module.pt
    python -m training export-zoo PATTERN.pt --out zoo.pt    # built-in archs: the zoo's (legacy) format

The same loop as the zoo (`train.fit`: SGD + Nesterov, cosine, resumable
from <out>.state.pt, DDP under torchrun, tqdm progress bars); checkpoints
are module checkpoints (`training/modelckpt.py`).
"""
from __future__ import annotations

import copy
import os

import torch

from . import data as data_mod
from . import modelckpt, pattern, spec as spec_mod, userdata

# per-method defaults: the zoo's recipes (docs/results.md)
METHOD_DEFAULTS = {
    # patterns frozen: alpha, BN, real convs and fc train; BN re-estimated
    # first; distilled from the Full model (1/2 CE + 1/2 T^2 KL, T = 4)
    "refine": dict(lr=0.01, wd=1e-4, warmup_epochs=0.0, kd_alpha=0.5, bn_reestimate=True),
    # patterns learned (sign straight through), alpha learned; no distillation
    "ste": dict(lr=0.02, wd=5e-4, warmup_epochs=0.0, kd_alpha=0.0, bn_reestimate=False),
}


def _data(args, d, preprocess: dict, labels, log):
    """(train, val) Datasets decoded per `preprocess`; rank 0 fills the cache first."""
    from .train import log as dlog
    kw = dict(preprocess=preprocess, labels=labels, cache_dir=args.cache_dir or None,
              progress=d.main and not getattr(args, "quiet", False),
              log=(lambda *a: dlog(d, *a)))
    def both():
        ds = userdata.load(args.data, **kw)
        if args.val:
            return ds, userdata.load(args.val, **dict(kw, labels=list(ds.classes)))
        return userdata.split(ds, args.split_rule, args.val_fraction, args.split_seed)
    if d.main:
        tr, va = both()
    d.barrier()
    if not d.main:
        tr, va = both()
    return tr, va


def _data_cfg(args, tr, va) -> dict:
    return {"data": os.path.abspath(args.data), "val": os.path.abspath(args.val) if args.val else None,
            "split_rule": None if args.val else args.split_rule,
            "val_fraction": None if args.val else args.val_fraction, "split_seed": args.split_seed,
            "train_images": len(tr), "val_images": len(va), "skipped_images": tr.skipped + (va.skipped if args.val else 0)}


def _fit_cfg(args, **extra) -> dict:
    cfg = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "wd": args.wd,
           "schedule": args.schedule, "warmup_epochs": args.warmup_epochs, "label_smoothing": args.label_smoothing,
           "ema": args.ema, "seed": args.seed, "kd_alpha": None, "kd_t": None}
    cfg.update(extra)
    return cfg


def _check_outputs(model, n_classes: int, size, spec: str) -> None:
    m = copy.deepcopy(model).eval()
    try:
        with torch.no_grad():
            out = m(torch.zeros(1, 3, *size))
    except Exception as e:
        raise ValueError(f"--model {spec}: forward on a (1, 3, {size[0]}, {size[1]}) input failed "
                         f"({type(e).__name__}: {e}); check --input-size") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != n_classes:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"--model {spec}: outputs {shape} for one image, but the data has {n_classes} classes; "
                         f"the model must return logits (N, {n_classes}) (e.g. --model-kwargs "
                         f"'{{\"num_classes\": {n_classes}}}')")


def cmd_train_model(args, d):
    """Full training of a SPEC model on the user's images."""
    from .train import fit, log
    import json
    if not args.input_size:
        raise SystemExit("error: train --model needs --input-size H W (the size images are resized to)")
    kwargs = json.loads(args.model_kwargs) if args.model_kwargs else {}
    pre = _preprocess_from_args(args)
    tr, va = _data(args, d, pre, None, log)
    if "num_classes" not in kwargs and spec_mod.accepts(args.model, "num_classes"):
        kwargs["num_classes"] = len(tr.classes)
    torch.manual_seed(args.seed)
    model = spec_mod.build(args.model, kwargs)
    _check_outputs(model, len(tr.classes), args.input_size, args.model)
    if pre["mean"] is None:
        pre["mean"], pre["std"] = data_mod.mean_std(tr.images)
    init = None
    prior = []
    if args.init:
        src = modelckpt.read(args.init)
        if src["stage"] != "full":
            raise SystemExit(f"error: --init {args.init} is a {src['stage']} checkpoint; train continues a Full one")
        same = {k: src["preprocess"].get(k) for k in ("size", "resize", "crop_fraction")}
        if same != {k: pre.get(k) for k in same}:
            raise SystemExit(f"error: --init {args.init} was trained with preprocessing {src['preprocess']}; "
                             f"give the same --input-size/--resize")
        if src["labels"] != tr.classes:
            raise SystemExit(f"error: --init {args.init} has labels {src['labels']}, {args.data} has {tr.classes}")
        model.load_state_dict(src["state_dict"])
        pre, prior, init = src["preprocess"], src["history"], os.path.abspath(args.init)
    cfg = _fit_cfg(args, command="train", model=args.model, model_kwargs=kwargs, init=init, **_data_cfg(args, tr, va))
    n_par = sum(p.numel() for p in model.parameters())
    log(d, f"train {args.model}: {n_par} parameters, {len(tr.classes)} classes, {len(tr)} train / {len(va)} "
           f"validation images at {pre['size'][0]}x{pre['size'][1]} ({pre['resize']}), "
           f"{d.world} process(es) x {torch.get_num_threads()} thread(s)")

    def save(m, history, top1):
        modelckpt.save(modelckpt.make(m, spec=args.model, model_kwargs=kwargs, labels=tr.classes, preprocess=pre,
                                      stage="full", val_top1=top1, history=history, train_config=cfg), args.out)
    fit(model, cfg, args, d, tr, va, pre, stage="full", prior_history=prior, save_checkpoint=save)


def _preprocess_from_args(args) -> dict:
    pre = {"size": list(args.input_size), "resize": args.resize, "mean": None, "std": None, "channel_order": "RGB"}
    if args.resize == "center_crop":
        pre["crop_fraction"] = args.crop_fraction
    if args.mean or args.std:
        if not (args.mean and args.std):
            raise SystemExit("error: give both --mean and --std (3 numbers each, 0..1 scale)")
        pre["mean"], pre["std"] = list(args.mean), list(args.std)
    return pre


def _read_init(args, d) -> dict:
    """--init as a module checkpoint: a module or zoo checkpoint as is, or a
    plain state_dict of --model (weights trained elsewhere) wrapped in one,
    with labels = DATA's sorted classes and preprocessing from the flags."""
    import json
    raw = None
    if os.path.isfile(args.init):
        try:
            raw = torch.load(args.init, map_location="cpu", weights_only=True)
        except Exception:
            raw = None          # modelckpt.read reports it
    if not (isinstance(raw, dict) and raw and all(isinstance(v, torch.Tensor) for v in raw.values())):
        return modelckpt.read(args.init)
    if not args.model or not args.input_size:
        raise SystemExit(f"error: --init {args.init} is a plain state_dict; give --model SPEC and --input-size H W "
                         f"(and --mean/--std if the model was trained with a normalization)")
    kwargs = json.loads(args.model_kwargs) if args.model_kwargs else {}
    pre = _preprocess_from_args(args)
    classes = sorted({c for c, _ in userdata._members(args.data)[0]})
    if "num_classes" not in kwargs and spec_mod.accepts(args.model, "num_classes"):
        kwargs["num_classes"] = len(classes)
    m = spec_mod.build(args.model, kwargs)
    try:
        m.load_state_dict(raw, strict=True)
    except RuntimeError as e:
        raise ValueError(f"--init {args.init} does not fit {args.model}({kwargs}): {str(e).splitlines()[0]}") from None
    _check_outputs(m, len(classes), pre["size"], args.model)
    if pre["mean"] is None:
        tr, _ = _data(args, d, dict(pre, mean=[0.0] * 3, std=[1.0] * 3), classes, None)
        pre["mean"], pre["std"] = data_mod.mean_std(tr.images)
    return modelckpt.make(m, spec=args.model, model_kwargs=kwargs, labels=classes, preprocess=pre, stage="full",
                          train_config={"command": "import", "state_dict": os.path.abspath(args.init)})


def cmd_pattern(args, d):
    """Full (module or zoo checkpoint) -> binarize -> [BN re-est.] -> refine or STE."""
    from .train import evaluate, fit, log
    if os.path.abspath(args.out) in (os.path.abspath(args.init), os.path.abspath(args.teacher or args.init)):
        raise SystemExit(f"error: --out {args.out} is an input of this command; write the pattern model elsewhere")
    src = _read_init(args, d)
    if src["stage"] != "full":
        raise SystemExit(f"error: --init {args.init} is a {src['stage']} checkpoint; pattern starts from a Full one")
    spec = args.model or src["model"]
    if args.model and args.model != src["model"]:
        log(d, f"note: --init was saved from {src['model']}; building {args.model} as asked")
    src = dict(src, model=spec)
    for k, v in METHOD_DEFAULTS[args.method].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    full = modelckpt.build_model(src)
    model = modelckpt.build_model(src).train()
    names = pattern.binarize_modules(model, args.binarize, args.method)    # ValueError if it matches nothing
    pre = src["preprocess"]
    tr, va = _data(args, d, pre, src["labels"], log)
    if len(tr.classes) != len(src["labels"]):
        raise SystemExit(f"error: {args.data} has {len(tr.classes)} classes, the model {len(src['labels'])}")
    teacher = None
    if args.kd_alpha > 0:
        teacher = modelckpt.build_model(modelckpt.read(args.teacher)) if args.teacher else full
        for p in teacher.parameters():
            p.requires_grad_(False)
    cfg = _fit_cfg(args, command="pattern", model=spec, model_kwargs=src["model_kwargs"], method=args.method,
                   binarize=args.binarize, binarized=names, init=os.path.abspath(args.init),
                   teacher=(os.path.abspath(args.teacher) if args.teacher else "init") if teacher is not None else None,
                   bn_reestimate=bool(args.bn_reestimate), **_data_cfg(args, tr, va))
    if teacher is not None:
        cfg.update(kd_alpha=args.kd_alpha, kd_t=args.kd_t)
    what = {"refine": "patterns frozen; alpha, BN, real convs and fc train",
            "ste": "patterns learned (sign straight through), alpha learned"}[args.method]
    n_w = sum(model.get_submodule(n).weight.numel() for n in names)
    log(d, f"pattern {spec} ({args.method}): {len(names)} k x k convs binarized ({n_w} weights -> 1 bit + "
           f"{sum(model.get_submodule(n).out_channels for n in names)} alpha): {what}; start: Full validation "
           f"top1 {src['val_top1']}")
    history = list(src["history"])

    def before(m, batches):
        mean, std = pre["mean"], pre["std"]
        vb = data_mod.Batches(va, mean, std, 500, train=False)
        ev = evaluate(m, vb)
        rec = {"stage": "bipattern", "binarized_convs": len(names), "bn_reestimate": False, "val_top1": ev["top1"]}
        history.append(rec)
        msg = f"BiPattern (sign(W), alpha = mean|W|): validation top1 {ev['top1']:.4f}"
        if args.bn_reestimate:
            n = pattern.reestimate_bn(m, batches, args.bn_batches)
            ev = evaluate(m, vb)
            history.append(dict(rec, bn_reestimate=True, bn_batches=n, val_top1=ev["top1"]))
            msg += f"; after BN re-estimation ({n} batches): {ev['top1']:.4f}"
        log(d, msg)

    def save(m, hist, top1):
        modelckpt.save(modelckpt.make(m, spec=spec, model_kwargs=src["model_kwargs"], labels=src["labels"],
                                      preprocess=pre, stage="pattern", method=args.method, val_top1=top1,
                                      history=hist, train_config=cfg), args.out)
    if args.epochs == 0:        # binarize (+ BN re-estimation) only: the BiPattern model
        if d.main:
            tb = data_mod.Batches(tr, pre["mean"], pre["std"], args.batch_size, train=True, seed=args.seed)
            before(model, tb)
            ck = modelckpt.make(model, spec=spec, model_kwargs=src["model_kwargs"], labels=src["labels"],
                                preprocess=pre, stage="bipattern", method=args.method,
                                val_top1=history[-1]["val_top1"], history=history, train_config=cfg)
            if os.path.exists(args.out) and not args.force:
                raise SystemExit(f"error: {args.out} exists; refusing to overwrite it (use --force)")
            modelckpt.save(ck, args.out)
            log(d, f"wrote {args.out}")
        return
    fit(model, cfg, args, d, tr, va, pre, stage="pattern", teacher=teacher,
        prior_history=history, before_first_epoch=before, save_checkpoint=save)


def _eval_split(args, ck) -> tuple[str, float, int]:
    """(rule, fraction, seed) for `eval`: each given option, else what the
    checkpoint's run recorded (train_config), else fraction 0.1 seed 0 -- so a
    `--split-rule cifar` run is scored on its own validation images."""
    cfg = ck.get("train_config") or {}
    pick = lambda given, key, dflt: given if given is not None else (cfg.get(key) if cfg.get(key) is not None
                                                                     else dflt)
    return (pick(args.split_rule, "split_rule", "fraction"), pick(args.val_fraction, "val_fraction", 0.1),
            pick(args.split_seed, "split_seed", 0))


def cmd_eval_module(args, d, ck):
    from .train import evaluate, log
    model = modelckpt.build_model(ck)
    pre = ck["preprocess"]
    ds = userdata.load(args.data, pre, ck["labels"], cache_dir=args.cache_dir or None, progress=d.main,
                       log=lambda *a: log(d, *a))
    if args.split != "all":
        rule, frac, seed = _eval_split(args, ck)
        tr, va = userdata.split(ds, rule, frac, seed)
        ds = va if args.split == "val" else tr
    ev = evaluate(model, data_mod.Batches(ds, pre["mean"], pre["std"], 500, train=False))
    log(d, f"{args.ckpt} ({ck['model']}, stage {ck['stage']}, {len(ck['binarized'])} pattern convs): "
           f"{args.split} split ({_eval_split(args, ck)[0] if args.split != 'all' else 'every image'}) of {args.data}, "
           f"{ev['n']} images: top1 {ev['top1']:.4f} top5 {ev['top5']:.4f} loss {ev['loss']:.4f}")
    return ev


def cmd_import_zoo(args, d):
    ck = modelckpt.read(args.ckpt)
    if os.path.exists(args.out) and not args.force:
        raise SystemExit(f"error: {args.out} exists; refusing to overwrite it (use --force)")
    modelckpt.save(ck, args.out)
    print(f"{args.ckpt} -> {args.out}: {ck['model']}, stage {ck['stage']}, {len(ck['binarized'])} pattern convs")


def cmd_export_zoo(args, d):
    zk = modelckpt.to_zoo(modelckpt.read(args.ckpt))
    from . import checkpoint as zoo_ckpt
    if os.path.exists(args.out) and not args.force:
        raise SystemExit(f"error: {args.out} exists; refusing to overwrite it (use --force)")
    zoo_ckpt.save(zk, args.out)
    print(f"{args.ckpt} -> {args.out}: zoo checkpoint {zk['arch']}, stage {zk['stage']}, binarize {zk['binarize']}")


def add_model_args(s, pattern_cmd: bool = False) -> None:
    """--input-size, --resize, --mean/--std, --model-kwargs (for pattern: only
    when --init is a plain state_dict)."""
    w = "plain-state_dict --init: " if pattern_cmd else "--model: "
    s.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help=w + "the model's input size")
    s.add_argument("--resize", choices=("stretch", "center_crop"), default="stretch",
                   help=w + "how images of other sizes are resized (recorded for the converter)")
    s.add_argument("--crop-fraction", type=float, default=0.875, help=w + "center_crop: crop / short side")
    s.add_argument("--mean", type=float, nargs=3, help=w + "normalization mean (0..1); default: the training images'")
    s.add_argument("--std", type=float, nargs=3, help=w + "normalization std (0..1); default: the training images'")
    s.add_argument("--model-kwargs", help=w + "JSON keyword arguments for the SPEC's callable "
                                              "(num_classes is filled in from the data if it takes it)")


def add_data_args(s) -> None:
    s.add_argument("--val", help="separate validation folder/.tar (then all of --data trains)")
    s.add_argument("--split-rule", choices=userdata.SPLIT_RULES, default="fraction",
                   help="fraction (default): a seeded per-class share of --data validates; "
                        "cifar: numeric file stems >= 4500 validate (the shared CIFAR archive)")
    s.add_argument("--val-fraction", type=float, default=0.1)
    s.add_argument("--split-seed", type=int, default=0)
