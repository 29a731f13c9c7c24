"""`python -m training.stacked` on a tiny archive: latent fine-tuning with BN
statistics re-estimated after each epoch, and --reestimate-bn of a checkpoint."""
import pytest
import torch

from training import stacked as ts
from training import train


def _common(tiny_tar, tmp_path):
    return ["--data", tiny_tar, "--cache-dir", str(tmp_path / "cache"), "--threads", "1", "--batch-size", "8"]


def test_latent_run_and_reestimate_bn(tiny_tar, tmp_path, capsys):
    full, out, again = tmp_path / "full.pt", tmp_path / "s.pt", tmp_path / "s2.pt"
    assert train.main(["train", "--arch", "resnet20", "--epochs", "1", "--out", str(full), "--quiet",
                       "--data", tiny_tar, "--cache-dir", str(tmp_path / "cache"), "--threads", "1",
                       "--batch-size", "8"]) == 0
    assert ts.main(["--ckpt", str(full), "--method", "latent", "--d", "4", "--m", "8", "--epochs", "2",
                    "--bn-batches", "2", "-o", str(out), *_common(tiny_tar, tmp_path)]) == 0
    net, ck = ts.load_checkpoint(str(out))                 # written after every epoch, as StackedConv2d
    assert [h["epoch"] for h in ck["history"]] == [1, 2] and ck["train_config"]["method"] == "latent"
    assert all(not isinstance(m, ts.LatentStackedConv2d) for m in net.modules())
    assert sum(isinstance(m, ts.StackedConv2d) for m in net.modules()) == 19
    before = out.read_bytes()
    capsys.readouterr()
    assert ts.main(["--ckpt", str(out), "--reestimate-bn", "--bn-batches", "1", "-o", str(again),
                    *_common(tiny_tar, tmp_path)]) == 0
    assert "BN statistics over 1 training batches" in capsys.readouterr().out
    assert out.read_bytes() == before                     # the input is kept
    net2, ck2 = ts.load_checkpoint(str(again))
    assert ck2["train_config"]["bn_reestimated_batches"] == 1 and ck2["history"][-1]["val_top1"] == ck2["val_top1"]
    sd, sd2 = net.state_dict(), net2.state_dict()
    assert any(not torch.equal(sd[k], sd2[k]) for k in sd if k.endswith("running_mean"))
    assert all(torch.equal(sd[k], sd2[k]) for k in sd if not k.endswith(("running_mean", "running_var",
                                                                          "num_batches_tracked")))
    with pytest.raises(SystemExit, match="must differ"):
        ts.main(["--ckpt", str(out), "--reestimate-bn", "-o", str(out), *_common(tiny_tar, tmp_path)])
    # --resume goes on from a checkpoint: its d, m, its history first, the input kept
    more = tmp_path / "s3.pt"
    m_before = {k: v for k, v in ck["dm"].items()}
    assert ts.main(["--ckpt", str(full), "--resume", str(again), "--epochs", "1", "--bn-batches", "1",
                    "-o", str(more), *_common(tiny_tar, tmp_path)]) == 0
    _, ck3 = ts.load_checkpoint(str(more))
    assert ck3["dm"] == m_before and ck3["train_config"]["resume"] == str(again)
    assert ck3["history"][:3] == ck2["history"] and ck3["history"][3]["epoch"] == 1
    # --resume with a smaller --m: every bank keeps its --m most used filters
    fewer = tmp_path / "s4.pt"
    assert ts.main(["--ckpt", str(full), "--resume", str(more), "--m", "3", "--epochs", "1", "--bn-batches", "1",
                    "-o", str(fewer), *_common(tiny_tar, tmp_path)]) == 0
    net4, ck4 = ts.load_checkpoint(str(fewer))
    assert ck4["dm"] == {k: [d, min(m, 3)] for k, (d, m) in m_before.items()}
    assert all(mod.bank.shape[0] == ck4["dm"][n][1] and int(mod.sel.argmax(-1).max()) < mod.bank.shape[0]
               for n, mod in net4.named_modules() if isinstance(mod, ts.StackedConv2d))
    # --resume with --m-at: only the matching convs' banks shrink
    per = tmp_path / "s5.pt"
    assert ts.main(["--ckpt", str(full), "--resume", str(more), "--m-at", "stage3.*=2", "--epochs", "1",
                    "--bn-batches", "1", "-o", str(per), *_common(tiny_tar, tmp_path)]) == 0
    assert ts.load_checkpoint(str(per))[1]["dm"] == {k: [d, 2 if k.startswith("stage3.") else m]
                                                      for k, (d, m) in m_before.items()}
    # --refine: banks and selections frozen, alpha (and BN, biases, fc) trained
    ref = tmp_path / "refined.pt"
    assert ts.main(["--ckpt", str(full), "--resume", str(more), "--refine", "--epochs", "1", "--bn-batches", "1",
                    "-o", str(ref), *_common(tiny_tar, tmp_path)]) == 0
    _, ck_ref = ts.load_checkpoint(str(ref))
    sd0, sd1 = ck3["state_dict"], ck_ref["state_dict"]
    assert ck_ref["dm"] == ck3["dm"] and ck_ref["train_config"]["refine"] is True
    assert all(torch.equal(sd0[k], sd1[k]) for k in sd0 if k.endswith((".bank", ".sel_index")))
    assert any(not torch.equal(sd0[k], sd1[k]) for k in sd0 if k.endswith(".alpha"))
    # --continue: the resumed run's own schedule (epochs, lr) from the step its last epoch reached
    ck_mid = torch.load(str(out), weights_only=False)
    ck_mid["history"] = ck_mid["history"][:1]                # as if cut short after epoch 1 of 2
    mid, cont = tmp_path / "mid.pt", tmp_path / "cont.pt"
    torch.save(ck_mid, str(mid))
    capsys.readouterr()
    assert ts.main(["--ckpt", str(full), "--resume", str(mid), "--continue", "--epochs", "9", "--lr", "0.5",
                    "-o", str(cont), *_common(tiny_tar, tmp_path)]) == 0
    assert "epoch 2: step " in capsys.readouterr().out
    _, ck_c = ts.load_checkpoint(str(cont))
    h = ck_c["history"]
    assert [r["epoch"] for r in h] == [1, 2] and h[1]["steps"] == ck["history"][1]["steps"]
    assert (ck_c["train_config"]["epochs"], ck_c["train_config"]["lr"]) == (2, ck["train_config"]["lr"])
    for bad, msg in ((["--resume", str(cont), "--continue"], "finished its schedule"),
                     (["--continue"], "goes on with a --resume run"),
                     (["--resume", str(mid), "--continue", "--m", "2"], "no --refine, --m"),
                     (["--resume", str(ref), "--continue"], "no cosine schedule to continue"),
                     (["--resume", str(mid), "--continue", "--batch-size", "4"], "--batch-size 8")):
        with pytest.raises(SystemExit, match=msg):
            ts.main(["--ckpt", str(full), *_common(tiny_tar, tmp_path), *bad, "-o", str(tmp_path / "x.pt")])
    for bad, msg in ((["--resume", str(more), "--refine", "--m", "2"], "no --m"),
                     (["--refine"], "give it with --resume")):
        with pytest.raises(SystemExit, match=msg):
            ts.main(["--ckpt", str(full), *bad, "-o", str(tmp_path / "x.pt"), *_common(tiny_tar, tmp_path)])
    with pytest.raises(SystemExit, match="a bank has 1..256 filters"):
        ts.main(["--ckpt", str(full), "--resume", str(more), "--m", "0", "-o", str(tmp_path / "x.pt"),
                 *_common(tiny_tar, tmp_path)])
    with pytest.raises(SystemExit, match="must differ from --resume"):
        ts.main(["--ckpt", str(full), "--resume", str(more), "-o", str(more), *_common(tiny_tar, tmp_path)])
    with pytest.raises(SystemExit, match="not a stacked checkpoint"):
        ts.main(["--ckpt", str(full), "--resume", str(full), "-o", str(tmp_path / "x.pt"),
                 *_common(tiny_tar, tmp_path)])
    other = tmp_path / "other.pt"
    assert train.main(["train", "--arch", "sepnet-cifar", "--epochs", "1", "--out", str(other), "--quiet",
                       "--data", tiny_tar, "--cache-dir", str(tmp_path / "cache"), "--threads", "1",
                       "--batch-size", "8"]) == 0
    with pytest.raises(SystemExit, match="not a stacked model of"):
        ts.main(["--ckpt", str(other), "--resume", str(more), "-o", str(tmp_path / "x.pt"),
                 *_common(tiny_tar, tmp_path)])
    # --init: the k-means starts from another checkpoint of the same model, --ckpt stays the teacher
    ste = tmp_path / "ste.pt"
    assert train.main(["train", "--arch", "resnet20", "--init", str(full), "--binary-from-start", "all",
                       "--epochs", "1", "--out", str(ste), "--quiet", "--data", tiny_tar,
                       "--cache-dir", str(tmp_path / "cache"), "--threads", "1", "--batch-size", "8"]) == 0
    from_ste = tmp_path / "from-ste.pt"
    assert ts.main(["--ckpt", str(full), "--init", str(ste), "--d", "4", "--m", "8", "--epochs", "1",
                    "--bn-batches", "1", "-o", str(from_ste), *_common(tiny_tar, tmp_path)]) == 0
    assert ts.load_checkpoint(str(from_ste))[1]["train_config"]["init"] == str(ste)
    with pytest.raises(SystemExit, match="is not a checkpoint of"):
        ts.main(["--ckpt", str(full), "--init", str(other), "-o", str(tmp_path / "x.pt"), *_common(tiny_tar, tmp_path)])
    with pytest.raises(SystemExit, match="--init starts a run"):
        ts.main(["--ckpt", str(full), "--init", str(ste), "--resume", str(more), "-o", str(tmp_path / "x.pt"),
                 *_common(tiny_tar, tmp_path)])
    # --m-at: a bank size per conv name pattern, the planned bytes printed before training
    capsys.readouterr()
    per_conv = tmp_path / "per-conv.pt"
    assert ts.main(["--ckpt", str(full), "--d", "4", "--m", "6", "--m-at", "stage1.*=3", "--m-at", "conv1=2",
                    "--d-at", "stage3.*=2", "--epochs", "1", "--bn-batches", "1", "-o", str(per_conv),
                    *_common(tiny_tar, tmp_path)]) == 0
    dm = ts.load_checkpoint(str(per_conv))[1]["dm"]
    assert dm["conv1"] == [3, 2] and dm["stage1.block2.conv2"] == [4, 3] and dm["stage2.block0.conv1"] == [4, 6]
    assert dm["stage3.block0.conv1"] == [2, 6]
    assert "stacked k x k weights (bank + indices): " in capsys.readouterr().out
    for bad, msg in ((["--m-at", "layer9.*=4"], "matches none of the convs"), (["--m-at", "stage1.*"], "PATTERN=N"),
                     (["--m-at", "stage1.*=300"], "PATTERN=N"), (["--m", "257"], "a bank has 1..256"),
                     (["--d-at", "stage9*=2"], "--d-at stage9"), (["--d", "0"], "at least one channel"),
                     (["--resume", str(more), "--d-at", "stage3.*=2"], "no --d-at")):
        with pytest.raises(SystemExit, match=msg):
            ts.main(["--ckpt", str(full), *bad, "-o", str(tmp_path / "x.pt"), *_common(tiny_tar, tmp_path)])
    assert not (tmp_path / "x.pt").exists()

    # --probe: untrained cost of stacking groups of convs, nothing written
    capsys.readouterr()
    assert ts.main(["--ckpt", str(full), "--probe", "stage3.*=2,4", "--probe", "conv1=3,2",
                    *_common(tiny_tar, tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3].startswith("unstacked: validation top1 ")
    assert lines[-2].startswith("stage3.* d=2 m=4: 6 convs, k x k ") and "untrained, BN over 20 batches" in lines[-2]
    assert lines[-1].startswith("conv1 d=3 m=2: 1 convs, k x k 10 bytes")   # 2 rows of 4 bytes + 16 1-bit indices
    for bad, msg in ((["--probe", "stage3.*=2"], "PATTERN=D,M"), (["--probe", "nope.*=2,4"], "--probe pattern 'nope.*': it matches no k x k conv"),
                     (["--probe", "stage3.*=2,4", "-o", str(tmp_path / "x.pt")], "writes nothing")):
        with pytest.raises(SystemExit, match=msg):
            ts.main(["--ckpt", str(full), *bad, *_common(tiny_tar, tmp_path)])
    with pytest.raises(SystemExit, match="-o/--out is required"):
        ts.main(["--ckpt", str(full), *_common(tiny_tar, tmp_path)])


def test_doctests():
    import doctest
    r = doctest.testmod(ts, optionflags=doctest.ELLIPSIS)
    assert r.failed == 0 and r.attempted > 0
