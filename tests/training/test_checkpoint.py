import math

import pytest
import torch

from training import checkpoint as ck
from training import nets

PRE = {"size": [32, 32], "resize": "stretch", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
       "channel_order": "RGB"}


def _full(arch_id="resnet20"):
    torch.manual_seed(0)
    return ck.make(nets.build(arch_id), stage="full", binarize=None, preprocess=PRE, val_top1=0.5,
                   history=[{"epoch": 1, "val_top1": 0.5}], train_config={"lr": 0.1})


def test_roundtrip_weights_only(tmp_path):
    p = str(tmp_path / "f.pt")
    ck.save(_full(), p)
    raw = torch.load(p, weights_only=True)            # plain content only
    assert set(raw) == set(ck.KEYS) and raw["format"] == "seprt-checkpoint" and raw["version"] == 1
    model, c = ck.load_model(p)
    assert c["stage"] == "full" and c["labels"][0] == "airplane"
    ref = nets.build("resnet20")
    assert set(model.state_dict()) == set(ref.state_dict())


def test_refined_checkpoint_keeps_trained_alpha(tmp_path):
    net = nets.build("sepnet-cifar")
    names = nets.binarize(net, "prb")
    trained = {}
    for n, c in nets.conv_layers(net):
        if n in names:
            with torch.no_grad():
                c.alpha.copy_(torch.rand_like(c.alpha) + 3.0)     # far from mean|W|
            trained[n] = c.alpha.detach().clone()
    p = str(tmp_path / "r.pt")
    ck.save(ck.make(net, stage="refined", binarize="prb", preprocess=PRE), p)
    model, c = ck.load_model(p)
    for n, conv in nets.conv_layers(model):
        if n in names:
            assert conv.mode == "pattern"
            assert torch.equal(conv.alpha, trained[n])
            assert torch.equal(conv.export()["alpha"], trained[n])
        else:
            assert conv.mode == "real"
    x = torch.randn(2, 3, 32, 32)
    net.eval()
    assert torch.allclose(model(x), net(x), atol=1e-5)


def test_ste_model_is_saved_as_patterns(tmp_path):
    net = nets.build("resnet20")
    nets.set_ste(net, "all")
    p = str(tmp_path / "s.pt")
    ck.save(ck.make(net, stage="refined", binarize="all", preprocess=PRE), p)
    model, _ = ck.load_model(p)
    net.eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(model(x), net(x), atol=1e-5)


def _expect(tmp_path, c, match):
    p = str(tmp_path / "bad.pt")
    torch.save(c, p)
    with pytest.raises(ValueError, match=match) as e:
        ck.load(p)
    assert "\n" not in str(e.value)


def test_validation_errors(tmp_path):
    c = _full(); c["arch"] = "resnet99"
    _expect(tmp_path, c, "unknown architecture 'resnet99'")
    c = _full(); del c["labels"]
    _expect(tmp_path, c, "missing keys: labels")
    c = _full(); c["optimizer"] = {}
    _expect(tmp_path, c, "unexpected keys: optimizer")
    c = _full(); c["state_dict"]["layers.conv1.weight"] = torch.zeros(16, 3, 5, 5)
    _expect(tmp_path, c, r"layers.conv1.weight.*shape \[16, 3, 5, 5\], expected \[16, 3, 3, 3\]")
    c = _full(); c["state_dict"]["layers.fc.bias"][3] = math.nan
    _expect(tmp_path, c, "layers.fc.bias.*NaN")
    c = _full(); del c["state_dict"]["layers.fc.bias"]
    _expect(tmp_path, c, "missing 1 keys, e.g. layers.fc.bias")
    c = _full(); c["state_dict"]["layers.conv1.alpha"] = torch.ones(16)
    _expect(tmp_path, c, "unexpected keys, e.g. layers.conv1.alpha")
    c = _full(); c["format"] = "something"
    _expect(tmp_path, c, "not a seprt checkpoint")
    c = _full(); c["binarize"] = "all"
    _expect(tmp_path, c, "stage 'full' does not go with binarize='all'")
    c = _full(); c["preprocess"] = dict(PRE, size=[64, 64])
    _expect(tmp_path, c, "preprocess size")
    with pytest.raises(ValueError, match="no such checkpoint"):
        ck.load(str(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        ck.load(str(tmp_path / "junk.pt"))


def test_pattern_entries_must_be_pm1(tmp_path):
    net = nets.build("resnet20")
    nets.binarize(net, "all")
    c = ck.make(net, stage="bipattern", binarize="all", preprocess=PRE)
    c["state_dict"]["layers.conv1.pattern"][0, 0, 0, 0] = 0.5
    _expect(tmp_path, c, r"other than \+1/-1")
