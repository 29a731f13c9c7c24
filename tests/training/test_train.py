"""The CLI end to end on a tiny synthetic archive: resume, refusal, the
binarize/refine/eval chain of the built-in architectures (--arch: training.models
modules, module checkpoints)."""
import os

import pytest
import torch

from training import modelckpt, models, pattern
from training import train


def _args(tiny_tar, tmp_path, *extra):
    return ["--data", tiny_tar, "--cache-dir", str(tmp_path / "cache"), "--threads", "1", *extra]


def _train(tiny_tar, tmp_path, out, *extra):
    return train.main(["train", "--arch", "resnet20", "--epochs", "3", "--out", str(out), "--batch-size", "8",
                       "--quiet", *_args(tiny_tar, tmp_path, *extra)])


def test_resume_after_interruption_continues_the_run(tiny_tar, tmp_path, capsys):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    assert _train(tiny_tar, tmp_path, a) == 0                    # uninterrupted
    assert _train(tiny_tar, tmp_path, b, "--stop-after", "1") == 0
    st = torch.load(train.state_path(str(b)), weights_only=True)
    assert st["epoch"] == 1 and not st["finished"]
    assert modelckpt.read(str(b))["history"][-1]["epoch"] == 1
    assert _train(tiny_tar, tmp_path, b) == 0                    # same command: continues
    assert "resuming" in capsys.readouterr().out
    ca, cb = modelckpt.read(str(a)), modelckpt.read(str(b))
    assert [h["epoch"] for h in cb["history"]] == [1, 2, 3]
    # the resumed run is the same run: same data order, same weights
    for k, v in ca["state_dict"].items():
        assert torch.allclose(v.float(), cb["state_dict"][k].float(), atol=1e-4), k
    assert _train(tiny_tar, tmp_path, b) == 0                    # finished: nothing to do
    assert "already finished" in capsys.readouterr().out
    assert not os.path.exists(str(b) + ".tmp")


def test_restart_with_different_settings_refuses(tiny_tar, tmp_path):
    out = tmp_path / "c.pt"
    assert _train(tiny_tar, tmp_path, out, "--stop-after", "1") == 0
    with pytest.raises(SystemExit, match=r"refusing to resume .*lr=0\.1.*lr=0\.05"):
        _train(tiny_tar, tmp_path, out, "--lr", "0.05")
    # a finished checkpoint without state is not silently overwritten
    os.remove(train.state_path(str(out)))
    with pytest.raises(SystemExit, match="refusing to overwrite"):
        _train(tiny_tar, tmp_path, out)


def test_init_continues_a_full_checkpoint_under_a_new_schedule(tiny_tar, tmp_path):
    first, cont = tmp_path / "first.pt", tmp_path / "cont.pt"
    assert _train(tiny_tar, tmp_path, first, "--stop-after", "1") == 0
    assert _train(tiny_tar, tmp_path, cont, "--init", str(first), "--epochs", "1", "--lr", "0.01") == 0
    c0, c = modelckpt.read(str(first)), modelckpt.read(str(cont))
    # the first run's history is kept, the new epoch follows it, the source is recorded
    assert [h["epoch"] for h in c["history"]] == [1, 1]
    assert c["history"][0] == c0["history"][0]
    assert c["train_config"]["init"] == str(first) and c["train_config"]["lr"] == 0.01
    assert any(not torch.equal(c0["state_dict"][k], v) for k, v in c["state_dict"].items())
    with pytest.raises(SystemExit, match="continues only a Full sepnet-cifar"):
        train.main(["train", "--arch", "sepnet-cifar", "--init", str(first), "--out", str(tmp_path / "x.pt"),
                    "--quiet", *_args(tiny_tar, tmp_path)])


def test_binarize_refine_eval_chain(tiny_tar, tmp_path, capsys):
    full, bi, ref = tmp_path / "f.pt", tmp_path / "bi.pt", tmp_path / "r.pt"
    train.main(["train", "--arch", "sepnet-cifar", "--epochs", "1", "--out", str(full), "--batch-size", "8",
                "--quiet", *_args(tiny_tar, tmp_path)])
    assert train.main(["binarize", "--ckpt", str(full), "--mode", "prb", "--out", str(bi),
                       *_args(tiny_tar, tmp_path)]) == 0
    cbi = modelckpt.read(str(bi))
    assert cbi["stage"] == "bipattern" and cbi["train_config"]["binarize"] == "prb"
    assert "quant_error" in cbi["history"][-1]
    assert cbi["binarized"] and all(n.endswith(".conv3x3") for n in cbi["binarized"])
    assert train.main(["refine", "--ckpt", str(bi), "--epochs", "1", "--out", str(ref), "--batch-size", "8",
                       "--teacher", str(full), "--bn-reestimate", "--quiet", *_args(tiny_tar, tmp_path)]) == 0
    cref = modelckpt.read(str(ref))
    assert cref["stage"] == "pattern" and cref["method"] == "refine" and cref["train_config"]["kd_alpha"] == 0.5
    assert cref["binarized"] == cbi["binarized"] and cref["model"] == models.ARCH_TO_SPEC["sepnet-cifar"]
    # patterns frozen, alpha trained
    sb, sr = cbi["state_dict"], cref["state_dict"]
    pk = [n + ".weight" for n in cbi["binarized"]]
    assert all(torch.equal(sb[k].sign(), sr[k].sign()) for k in pk)
    assert any(not torch.equal(sb[k].abs(), sr[k].abs()) for k in pk)
    capsys.readouterr()
    assert train.main(["eval", "--ckpt", str(ref), *_args(tiny_tar, tmp_path)]) == 0
    assert "validation accuracy" in capsys.readouterr().out


def test_refine_refuses_full_checkpoint(tiny_tar, tmp_path):
    full = tmp_path / "f.pt"
    _train(tiny_tar, tmp_path, full, "--stop-after", "1")
    with pytest.raises(SystemExit, match="binarize it first"):
        train.main(["refine", "--ckpt", str(full), "--out", str(tmp_path / "x.pt"), *_args(tiny_tar, tmp_path)])


def test_binary_from_start(tiny_tar, tmp_path):
    out = tmp_path / "s.pt"
    assert _train(tiny_tar, tmp_path, out, "--binary-from-start", "--stop-after", "1") == 0
    c = modelckpt.read(str(out))
    assert c["method"] == "ste" and c["train_config"]["binary_from_start"] == "all" and len(c["binarized"]) == 19
    st = torch.load(train.state_path(str(out)), weights_only=True)
    assert any(k.endswith(".alpha") for k in st["model"]) and any(k.endswith("conv1.weight") for k in st["model"])
    assert _train(tiny_tar, tmp_path, out, "--binary-from-start") == 0   # resumes in ste mode
    assert len(modelckpt.read(str(out))["history"]) == 3


def test_second_writer_is_refused(tiny_tar, tmp_path):
    out = tmp_path / "l.pt"
    held = train.lock_output(str(out))
    try:
        with pytest.raises(SystemExit, match="already writing"):
            _train(tiny_tar, tmp_path, out)
    finally:
        held.close()
    assert _train(tiny_tar, tmp_path, out, "--stop-after", "1") == 0


def test_amp_flag_resolves_and_may_change_on_resume(tiny_tar, tmp_path, monkeypatch):
    assert train.resolve_amp("off") is None and train.resolve_amp("bf16") == "bf16"
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: False)
    assert train.resolve_amp("auto") is None                   # no native bf16: float32
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: True)
    assert train.resolve_amp("auto") == "bf16"
    conv = torch.nn.Conv2d(3, 4, 3)
    with train.autocast("bf16"):
        assert conv(torch.randn(1, 3, 8, 8)).dtype == torch.bfloat16
    # a run started in bf16 resumes in float32 (weights/optimizer are float32 either way)
    out = tmp_path / "m.pt"
    assert _train(tiny_tar, tmp_path, out, "--amp", "bf16", "--stop-after", "1") == 0
    assert _train(tiny_tar, tmp_path, out, "--amp", "off") == 0
    hist = modelckpt.read(str(out))["history"]
    assert [h["amp"] for h in hist] == ["bf16", "fp32", "fp32"]


def _as_legacy_state(st: dict, arch_id: str) -> dict:
    """A resume state in the layout the layer-list interpreter wrote (before
    the built-in archs were modules): keys layers.<name>.*, parameters in
    layer-list order (conv weight [, alpha], bn.weight, bn.bias; fc weight, bias)."""
    sd, model, params = {}, st["model"], []
    for layer, (mod, bn) in models.zoo_name_map(arch_id).items():
        p = "layers." + layer.replace(".", "__") + "."
        own = [("weight", mod + ".weight")] + ([("alpha", mod + ".alpha")] if mod + ".alpha" in model else []) \
            if bn is not None else [("weight", mod + ".weight"), ("bias", mod + ".bias")]
        bns = [("bn." + k, f"{bn}.{k}") for k in ("weight", "bias", "running_mean", "running_var",
                                                   "num_batches_tracked")] if bn is not None else []
        for old, new in own + bns:
            sd[p + old] = model[new]
        params += [new for old, new in own + bns if not old.startswith("bn.running") and "num_batches" not in old]
    new_order = [k for k in model if k in params]               # the module's parameter order
    opt = st["optimizer"]
    to_old = {new_order.index(n): i for i, n in enumerate(params)}
    return dict(st, model=sd, optimizer={"state": {to_old[i]: v for i, v in opt["state"].items()},
                                         "param_groups": [dict(g, params=list(range(len(params))))
                                                          for g in opt["param_groups"]]})


@pytest.mark.parametrize("extra", [(), ("--binary-from-start",)])
def test_resume_state_of_the_layer_list_interpreter_continues(tiny_tar, tmp_path, extra):
    """<out>.state.pt files written before the built-in archs became modules resume
    (weights renamed, optimizer state moved by parameter name) into the same run."""
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    assert _train(tiny_tar, tmp_path, a, *extra) == 0
    assert _train(tiny_tar, tmp_path, b, "--stop-after", "1", *extra) == 0
    sp = train.state_path(str(b))
    st = torch.load(sp, weights_only=True)
    torch.save(_as_legacy_state(st, "resnet20"), sp)
    assert _train(tiny_tar, tmp_path, b, *extra) == 0
    ca, cb = modelckpt.read(str(a)), modelckpt.read(str(b))
    for k, v in ca["state_dict"].items():
        assert torch.equal(v, cb["state_dict"][k]), k


def test_weight_ema_is_the_bias_corrected_average_of_the_steps():
    """After 2 steps with decay d: ema = (d*w1 + w2) / (1 + d), for weights and
    BN running stats alike; the integer step counter is copied."""
    torch.manual_seed(0)
    d = 0.9
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    ema = train.WeightEMA(model, d)
    seen = []
    for t in (1, 2):
        model(torch.randn(8, 3)).square().mean().backward()
        opt.step()
        opt.zero_grad()
        ema.update(t)
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
    for k, v in ema.module.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(v, (d * seen[0][k] + seen[1][k]) / (1 + d), atol=1e-6), k
            assert not torch.equal(v, seen[1][k]), k
        else:
            assert torch.equal(v, seen[1][k]), k                # num_batches_tracked
    assert all(not p.requires_grad for p in ema.module.parameters())


def test_ema_run_writes_the_average_and_resumes_exactly(tiny_tar, tmp_path, capsys):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    ema = ("--ema", "0.8", "--amp", "off")
    assert _train(tiny_tar, tmp_path, a, *ema) == 0                     # uninterrupted
    assert _train(tiny_tar, tmp_path, b, *ema, "--stop-after", "1") == 0
    st = torch.load(train.state_path(str(b)), weights_only=True)
    # the checkpoint is the EMA (in its plain form), not the live weights in the state
    cb1 = modelckpt.read(str(b))
    assert cb1["train_config"]["ema"] == 0.8 and cb1["history"][-1]["ema"] == 0.8
    assert "val_top1_live" in cb1["history"][-1]
    assert all(torch.equal(v, st["ema"][k]) for k, v in cb1["state_dict"].items())
    assert any(not torch.equal(v, st["model"][k]) for k, v in cb1["state_dict"].items())
    with pytest.raises(SystemExit, match=r"refusing to resume .*ema=0\.8.*ema=0\.9"):
        _train(tiny_tar, tmp_path, b, "--ema", "0.9", "--amp", "off")
    with pytest.raises(SystemExit, match=r"refusing to resume .*ema=0\.8.*ema=0\.0"):
        _train(tiny_tar, tmp_path, b, "--amp", "off")
    capsys.readouterr()
    assert _train(tiny_tar, tmp_path, b, *ema) == 0                     # same command: continues
    assert "resuming" in capsys.readouterr().out
    ca, cb = modelckpt.read(str(a)), modelckpt.read(str(b))
    assert [h["epoch"] for h in cb["history"]] == [1, 2, 3]
    for k, v in ca["state_dict"].items():
        assert torch.allclose(v.float(), cb["state_dict"][k].float(), atol=1e-5), k
    assert ca["val_top1"] == cb["val_top1"]
    with pytest.raises(SystemExit, match=r"--ema 1\.0 is not a decay"):
        _train(tiny_tar, tmp_path, tmp_path / "x.pt", "--ema", "1")


def test_live_weights_writes_the_state_files_live_model(tiny_tar, tmp_path, capsys):
    """`live-weights`: the live (not EMA) weights of a run with --ema, folded to
    alpha * sign(W) for the STE convs like fit's own checkpoint; never over an
    existing file unless --force; a run without --ema is refused."""
    out, live = tmp_path / "s.pt", tmp_path / "live.pt"
    assert _train(tiny_tar, tmp_path, out, "--ema", "0.8", "--amp", "off", "--binary-from-start") == 0
    assert train.main(["live-weights", "--ckpt", str(out), "--out", str(live)]) == 0
    st = torch.load(train.state_path(str(out)), weights_only=True)
    ck, ema = modelckpt.read(str(live)), modelckpt.read(str(out))
    net = modelckpt.build_model(ema)
    pattern.binarize_modules(net, ema["binarized"], ema["method"] or "refine")
    net.load_state_dict(st["model"])
    want = pattern.plain_state_dict(net)
    assert ck["binarized"] == ema["binarized"] and len(ck["binarized"]) > 0
    assert all(torch.equal(v, want[k]) for k, v in ck["state_dict"].items())
    assert any(not torch.equal(v, ema["state_dict"][k]) for k, v in ck["state_dict"].items())
    assert ck["val_top1"] == ema["history"][-1]["val_top1_live"]
    before = live.read_bytes()
    assert train.main(["live-weights", "--ckpt", str(out), "--out", str(live)]) == 2
    assert "exists" in capsys.readouterr().err and live.read_bytes() == before
    plain = tmp_path / "plain.pt"
    assert _train(tiny_tar, tmp_path, plain, "--amp", "off") == 0
    assert train.main(["live-weights", "--ckpt", str(plain), "--out", str(tmp_path / "x.pt")]) == 2
    assert "not the state of a run with --ema" in capsys.readouterr().err


def test_state_written_before_ema_existed_resumes(tiny_tar, tmp_path):
    out = tmp_path / "old.pt"
    assert _train(tiny_tar, tmp_path, out, "--stop-after", "1") == 0
    sp = train.state_path(str(out))
    st = torch.load(sp, weights_only=True)
    del st["config"]["ema"]                                              # as written before --ema
    torch.save(st, sp)
    assert _train(tiny_tar, tmp_path, out) == 0
    assert len(modelckpt.read(str(out))["history"]) == 3
