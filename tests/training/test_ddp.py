"""DistributedDataParallel on CPU: 2 processes, gloo, a few steps."""
import os
import socket

import torch
import torch.multiprocessing as mp

from training import modelckpt


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, tiny_tar, tmp):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    from seprt import arch
    from training import data, models, train
    d = train.Dist()                                   # initialises gloo from the env, like torchrun
    assert d.world == 2 and d.rank == rank
    # 1) a few DDP steps; each rank starts from different weights on purpose
    torch.manual_seed(100 + rank)
    model = models.resnet20().to(memory_format=torch.channels_last)
    ddp = torch.nn.parallel.DistributedDataParallel(model)   # broadcasts rank 0's weights
    ds = data.load(tiny_tar, labels=list(arch.get("resnet20").labels), cache_dir=None, progress=False).split("train")
    b = data.Batches(ds, [0.5] * 3, [0.25] * 3, 4, train=True, seed=0, rank=rank, world_size=world)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    seen = []
    for x, y in list(b)[:3]:
        loss = torch.nn.functional.cross_entropy(ddp(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen.append(y.clone())
    torch.save({"params": {k: p.detach().clone() for k, p in model.named_parameters()},
                "labels": torch.cat(seen)}, os.path.join(tmp, f"rank{rank}.pt"))
    # 2) the CLI itself, unchanged, under 2 processes
    rc = train.main(["train", "--arch", "resnet20", "--epochs", "1", "--batch-size", "8", "--quiet",
                     "--out", os.path.join(tmp, "ddp.pt"), "--data", tiny_tar, "--cache-dir", "", "--threads", "1"])
    assert rc == 0


def test_ddp_two_cpu_processes_identical_weights(tiny_tar, tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), tiny_tar, str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert set(r0["params"]) == set(r1["params"])
    for k in r0["params"]:
        assert torch.equal(r0["params"][k], r1["params"][k]), k
    assert not torch.equal(r0["labels"], r1["labels"])         # the ranks saw different data
    c = modelckpt.read(str(tmp_path / "ddp.pt"))
    assert c["history"][-1]["world_size"] == 2
    assert sorted(os.listdir(tmp_path)) == ["ddp.lock", "ddp.pt", "ddp.state.pt", "rank0.pt", "rank1.pt"]


def _pattern_worker(rank, world, port, tiny_tar, tmp):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    from training import train
    common = ["--data", tiny_tar, "--split-rule", "cifar", "--batch-size", "8", "--quiet", "--cache-dir", "",
              "--threads", "1"]
    rc = train.main(["pattern", "--init", os.path.join(tmp, "full.pt"), "--method", "refine", "--epochs", "1",
                     "--out", os.path.join(tmp, "pat.pt"), *common])
    assert rc == 0


def test_ddp_pattern_refine_on_a_user_module(tiny_tar, tmp_path):
    """`pattern` (PatternConv2d with frozen weights, teacher, BN re-estimation) under 2 gloo processes."""
    from training import modelckpt, train
    assert train.main(["train", "--model", "training.models:resnet20", "--input-size", "32", "32", "--epochs", "1",
                       "--out", str(tmp_path / "full.pt"), "--data", tiny_tar, "--split-rule", "cifar",
                       "--batch-size", "8", "--quiet", "--cache-dir", "", "--threads", "1"]) == 0
    mp.spawn(_pattern_worker, args=(2, _free_port(), tiny_tar, str(tmp_path)), nprocs=2, join=True)
    c = modelckpt.read(str(tmp_path / "pat.pt"))
    assert c["history"][-1]["world_size"] == 2 and c["method"] == "refine" and len(c["binarized"]) == 19
