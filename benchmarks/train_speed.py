"""Training throughput (images/s) of the `train` step on this CPU, one lever at a time.

    python benchmarks/train_speed.py --arch resnet20 --steps 30 --threads 1
    python benchmarks/train_speed.py --arch resnet20 --steps 30 --threads 1 --bf16
    python benchmarks/train_speed.py --arch resnet20 --steps 30 --threads 1 --no-channels-last
    python benchmarks/train_speed.py --arch resnet20 --steps 30 --threads 1 --compile
    python benchmarks/train_speed.py --arch resnet20 --steps 30 --threads 1 --data synthetic

One step is exactly what `training/train.py:fit` does per batch: a batch from
`training.data.Batches` (uint8 gather, pad-4 crop + flip, normalize), forward,
cross-entropy, zero_grad, backward, SGD (Nesterov) step, the running loss and
accuracy sums. `--data synthetic` reuses one pre-made batch (the model alone);
the data path alone is timed too (`data only`), so the share the data path
costs is visible. The first `--warmup` steps are not timed (`--compile`: the
compile time is printed separately). Data: the decoded-image cache of the
shared CIFAR-10 archive if it exists (`--data-path`), else random uint8
images (speed does not depend on the pixels).

Prints the CPU model (/proc/cpuinfo), torch version and threads, the options,
the 1-minute load average before and after, and images/s. `--json` appends
one JSON line with the same to a file.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from training import data as data_mod  # noqa: E402
from training import models  # noqa: E402


def cpu_model() -> str:
    """`model name` of /proc/cpuinfo plus family/model (a KVM guest may show only "AMD EPYC")."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" in line:
                    k, v = (s.strip() for s in line.split(":", 1))
                    info.setdefault(k, v)
                if not line.strip():
                    break
        if "model name" in info:
            return f"{info['model name']} (family {info.get('cpu family', '?')} model {info.get('model', '?')})"
    except OSError:
        pass
    import platform
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def get_train_set(args, shape):
    if args.data_path and os.path.exists(args.data_path):
        from seprt import arch as arch_mod
        a = arch_mod.get(args.arch)
        ds = data_mod.load(args.data_path, size=tuple(shape), labels=list(a.labels), progress=False).split("train")
        return ds, "cifar10 cache"
    rng = np.random.default_rng(0)
    n = max(args.batch_size * 4, 2048)
    ds = data_mod.Dataset(rng.integers(0, 256, (n, *shape, 3), dtype=np.uint8),
                          rng.integers(0, 10, n).astype(np.int64), [f"c/{i:04d}.jpg" for i in range(n)],
                          [str(i) for i in range(10)], "random", 0, [])
    return ds, "random uint8"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="resnet20")
    p.add_argument("--steps", type=int, default=30, help="timed steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--interop-threads", type=int, default=1)
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--bf16", action="store_true", help='torch.autocast("cpu", dtype=torch.bfloat16)')
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--data", choices=("batches", "synthetic"), default="batches",
                   help="batches: training.data.Batches per step (as train does); synthetic: one fixed batch")
    p.add_argument("--data-path", default=data_mod.DEFAULT_DATA)
    p.add_argument("--json", help="append one JSON line of results to this file")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(args.interop_threads)
    torch.manual_seed(0)
    from seprt import arch as arch_mod
    shape = arch_mod.get(args.arch).input_shape[:2]
    ds, src = get_train_set(args, shape)
    mean, std = data_mod.mean_std(ds.images[:5000])
    batches = data_mod.Batches(ds, mean, std, args.batch_size, train=True, seed=0)

    def data_iter():
        ep = 0
        while True:
            batches.set_epoch(ep)
            yield from batches
            ep += 1

    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = models.build(args.arch).to(memory_format=fmt)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    crit = nn.CrossEntropyLoss()
    fwd = model
    compile_s = None
    if args.compile:
        fwd = torch.compile(model)
    def amp():
        return torch.autocast("cpu", dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()

    it = data_iter()
    fixed = next(it)

    def get_batch():
        x, y = fixed if args.data == "synthetic" else next(it)
        return x.contiguous(memory_format=fmt), y

    tot_loss = torch.zeros(()); tot_correct = torch.zeros(())

    def step():
        nonlocal tot_loss, tot_correct
        x, y = get_batch()
        with amp():
            logits = fwd(x)
            loss = crit(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            tot_loss += loss.detach().float() * len(y)
            tot_correct += (logits.argmax(1) == y).sum()

    la0 = loadavg()
    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    if args.compile:
        compile_s = first
    for _ in range(args.warmup - 1):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    dt = time.perf_counter() - t0
    ips = args.steps * args.batch_size / dt
    # the data path alone, same number of batches
    t1 = time.perf_counter()
    for _ in range(args.steps):
        next(it)
    data_ips = args.steps * args.batch_size / (time.perf_counter() - t1)
    la1 = loadavg()
    flags = cpu_flags()
    res = {"arch": args.arch, "cpu": cpu_model(), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
           "batch_size": args.batch_size, "channels_last": args.channels_last, "bf16": args.bf16,
           "compile": args.compile, "data": args.data, "data_source": src, "steps": args.steps,
           "images_per_s": round(ips, 1), "s_per_step": round(dt / args.steps, 4),
           "data_only_images_per_s": round(data_ips, 1), "first_step_s": round(first, 2),
           "compile_s": None if compile_s is None else round(compile_s, 1),
           "loadavg_1min_before": round(la0, 2), "loadavg_1min_after": round(la1, 2),
           "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags}
    opts = (f"channels_last={'on' if args.channels_last else 'off'} bf16={'on' if args.bf16 else 'off'} "
            f"compile={'on' if args.compile else 'off'} data={args.data}")
    print(f"CPU: {res['cpu']} (avx512_bf16 {res['avx512_bf16']}, amx_bf16 {res['amx_bf16']}); torch {res['torch']}, "
          f"{res['threads']} thread(s), {res['interop_threads']} interop")
    print(f"{args.arch} batch {args.batch_size}, {opts}, data source {src}")
    print(f"load average (1 min) before {la0:.2f}, after {la1:.2f}")
    if compile_s is not None:
        print(f"first step incl. torch.compile: {compile_s:.1f} s")
    print(f"train: {ips:.1f} images/s ({dt / args.steps * 1000:.1f} ms/step over {args.steps} steps); "
          f"data path alone: {data_ips:.0f} images/s")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "a") as f:
            f.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
