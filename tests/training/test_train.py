"""The CLI end to end on a tiny synthetic archive: resume, refusal, the
binarize/refine/eval chain."""
import os

import pytest
import torch

from training import checkpoint as ck
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
    assert ck.load(str(b))["history"][-1]["epoch"] == 1
    assert _train(tiny_tar, tmp_path, b) == 0                    # same command: continues
    assert "resuming" in capsys.readouterr().out
    ca, cb = ck.load(str(a)), ck.load(str(b))
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
    c0, c = ck.load(str(first)), ck.load(str(cont))
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
    cbi = ck.load(str(bi))
    assert cbi["stage"] == "bipattern" and cbi["binarize"] == "prb" and "quant_error" in cbi["history"][-1]
    assert train.main(["refine", "--ckpt", str(bi), "--epochs", "1", "--out", str(ref), "--batch-size", "8",
                       "--teacher", str(full), "--bn-reestimate", "--quiet", *_args(tiny_tar, tmp_path)]) == 0
    m_bi, _ = ck.load_model(str(bi))
    m_ref, cref = ck.load_model(str(ref))
    assert cref["stage"] == "refined" and cref["train_config"]["kd_alpha"] == 0.5
    # patterns frozen, alpha trained
    sb, sr = m_bi.state_dict(), m_ref.state_dict()
    pk = [k for k in sb if k.endswith(".pattern")]
    assert pk and all(torch.equal(sb[k], sr[k]) for k in pk)
    assert any(not torch.equal(sb[k.replace("pattern", "alpha")], sr[k.replace("pattern", "alpha")]) for k in pk)
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
    c = ck.load(str(out))
    assert c["binarize"] == "all" and c["train_config"]["binary_from_start"] == "all"
    assert any(k.endswith(".pattern") for k in c["state_dict"])
    st = torch.load(train.state_path(str(out)), weights_only=True)
    assert any(k.endswith(".alpha") for k in st["model"]) and any(k.endswith("conv1.weight") for k in st["model"])
    assert _train(tiny_tar, tmp_path, out, "--binary-from-start") == 0   # resumes in ste mode
    assert len(ck.load(str(out))["history"]) == 3


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
    hist = ck.load(str(out))["history"]
    assert [h["amp"] for h in hist] == ["bf16", "fp32", "fp32"]
