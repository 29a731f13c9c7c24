"""Tiny end to end: full net -> stacked (k-means init) -> a few KD steps ->
seprt .bin (B and BQ) -> predict, with the converter's parity checks; and
the stacked formats' numpy reference against PyTorch."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import seprt
from seprt import format as fmt
from seprt.ops.wfmt_stack import expand
from seprt.quant import pack_pattern, quantize_act
from converters import stacked as cs
from training import models, stacked as ts

from helpers import run_op, stack_node_weights, stack_tensors

SRC = {"model": models.ARCH_TO_SPEC["resnet20"], "model_kwargs": {}, "labels": [f"c{i}" for i in range(10)],
       "preprocess": {"size": [32, 32], "resize": "stretch", "mean": [0.5] * 3, "std": [0.25] * 3,
                      "channel_order": "RGB"}}


class _Batches(list):
    def set_epoch(self, e):
        pass


def _teacher_and_stacked(seed, method="proxies", m_at=()):
    """(a random resnet20 as teacher, a copy of it stacked d=4 m=8 (or as
    m_at says per conv), {name: (d, m)})."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    teacher = models.resnet20().eval()
    net = models.resnet20()
    net.load_state_dict(teacher.state_dict())
    return teacher, net, ts.stack_modules(net, 0, 0, iters=3, method=method, dm=ts.plan_dm(net, 4, 8, m_at))


def test_train_convert_predict(tmp_path):
    teacher, net, dm = _teacher_and_stacked(0)
    assert all(v[1] <= 8 for v in dm.values()) and len(dm) == 19
    x = torch.randn(8, 3, 32, 32)
    y = torch.randint(0, 10, (8,))
    # the two forward forms agree (values); train with split-transform-merge
    net.eval()
    a = net(x)
    ts.set_form(net, "expand")
    assert torch.allclose(a, net(x), atol=1e-4)
    ts.set_form(net, "stm")
    before = [p.detach().clone() for p in net.parameters()]
    hist = ts.finetune(net, teacher, _Batches([(x, y)] * 2), None, 1, 0.01, log=lambda s: None)
    assert hist and any(not torch.equal(b, p) for b, p in zip(before, net.parameters()))
    net.eval()
    ck = ts.make_checkpoint(net, dm, SRC)
    torch.save(ck, tmp_path / "s.pt")
    net2, ck2 = ts.load_checkpoint(str(tmp_path / "s.pt"))
    # a selection is stored as its argmax (u8 (K, S)), read back as the one-hot it picks
    sel = {k: v for k, v in ck["state_dict"].items() if k.endswith(".sel_index")}
    assert len(sel) == 19 and not any(k.endswith(".sel") for k in ck["state_dict"])
    assert all(v.dtype == torch.uint8 for v in sel.values())
    ts.set_form(net, "expand")                           # load_checkpoint's form: the same sums
    with torch.no_grad():
        torch.testing.assert_close(net2(x), net(x), atol=0, rtol=0)
    bad = dict(ck, state_dict={**ck["state_dict"], "conv1.sel_index": torch.full_like(sel["conv1.sel_index"], 8)})
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="conv1.sel_index is not a u8 selection"):
        ts.load_checkpoint(str(tmp_path / "bad.pt"))
    xs = np.random.default_rng(0).standard_normal((16, 32, 32, 3)).astype(np.float32)
    data, rep = cs.convert(net2, ck2, "B", None, xs, log=lambda s: None)        # raises if parity fails
    assert rep["rel_diff"] < 1e-4
    data, rep = cs.convert(net2, ck2, "BQ", xs, xs, log=lambda s: None)
    g = fmt.from_bytes(data)
    assert {n.wfmt for n in g.nodes if n.op == "conv" and n.kernel > 1} == {"stack_packed"}
    assert rep["kxk"]["ratio"] > 64 and rep["rel_diff"] < 0.25
    m = seprt.Model.from_bytes(data)
    assert m.info()["arch"] == "resnet20" and len(m.predict(seprt.demo_images()[0], top_k=3)) == 3
    # --byte-index: the same model as `stack` (a byte per index), for readers that predate stack_packed
    old, rep_old = cs.convert(net2, ck2, "BQ", xs, xs, log=lambda s: None, byte_index=True)
    assert {n.wfmt for n in fmt.from_bytes(old).nodes if n.op == "conv" and n.kernel > 1} == {"stack"}
    assert rep_old["kxk"]["bytes"] > rep["kxk"]["bytes"]
    np.testing.assert_array_equal(seprt.Model.from_bytes(old).logits(xs[:4]), m.logits(xs[:4]))
    # the plain model with the effective weights (the TFLite baseline's input) is the same function
    from training import modelckpt
    modelckpt.save(ts.expanded_checkpoint(str(tmp_path / "s.pt")), str(tmp_path / "e.pt"))
    plain = modelckpt.build_model(modelckpt.read(str(tmp_path / "e.pt")))
    xt = torch.from_numpy(xs.transpose(0, 3, 1, 2))
    with torch.no_grad():
        torch.testing.assert_close(plain(xt), net2(xt), atol=1e-5, rtol=1e-5)


def test_latent_method_moves_selection_and_bank_and_exports_the_same_function():
    """method "latent": the selection is the latent slices' best-correlated bank
    filter, each training forward takes one k-means step of the bank, the
    gradient reaches the latent weight, and to_stacked() is the same function."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    conv = torch.nn.Conv2d(8, 6, 3, padding=1)
    lat = ts.LatentStackedConv2d(conv, d=4, m=3)
    lat.init_from(conv, iters=5)
    # the k-means step is the numpy majority vote of the slices that picked each bank filter
    v = conv.weight.detach().reshape(6, 2, 36).reshape(12, 36).numpy()
    a = np.argmax(v @ lat.bank.reshape(3, 36).numpy().T, 1)
    want = lat.bank.reshape(3, 36).numpy().copy()
    for j in range(3):
        if (a == j).any():
            want[j] = np.where(v[a == j].sum(0) >= 0, 1.0, -1.0)
    lat.bank_step()
    np.testing.assert_array_equal(lat.bank.reshape(3, 36).numpy(), want)
    # gradient goes straight through to the latent weight; training moves selections
    x = torch.randn(2, 8, 5, 5)
    lat.train()
    lat(x).square().sum().backward()
    assert lat.weight.grad is not None and lat.weight.grad.abs().sum() > 0
    before = lat.assign().clone()
    with torch.no_grad():
        lat.weight.mul_(-1)                        # every slice now correlates best with another filter
    assert not torch.equal(before, lat.assign())
    lat.eval()
    st = lat.to_stacked().eval()
    torch.testing.assert_close(st(x), lat(x), atol=1e-6, rtol=1e-6)
    assert torch.equal(torch.from_numpy(st.stack_export()["index"].astype(np.int64)), lat.assign())
    # from_stacked inverts to_stacked: same selections, same function, also where alpha < 0
    with torch.no_grad():
        st.alpha[:3] *= -1
    back = ts.LatentStackedConv2d.from_stacked(st).eval()
    assert torch.equal(back.assign(), st.sel.argmax(-1))
    torch.testing.assert_close(back(x), st(x), atol=1e-6, rtol=1e-6)


def test_latent_method_end_to_end(tmp_path):
    """latent fine-tuning -> to_stacked -> checkpoint -> seprt BQ -> predict."""
    teacher, net, dm = _teacher_and_stacked(1, "latent", m_at=[("stage3.*", 24), ("stage3.block0.conv1", 5)])
    assert dm["stage2.block0.conv1"] == (4, 8) and dm["stage3.block1.conv2"] == (4, 24)
    assert dm["stage3.block0.conv1"] == (4, 5)            # the last matching pattern wins
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    ts.finetune(net, teacher, _Batches([(x, y)] * 2), None, 1, 0.01, log=lambda s: None)
    net.eval()
    with torch.no_grad():
        want = net(x)
    ts.to_stacked(net)
    assert not any(isinstance(mod, ts.LatentStackedConv2d) for mod in net.modules())
    torch.save(ts.make_checkpoint(net, dm, SRC), tmp_path / "s.pt")
    net2, ck2 = ts.load_checkpoint(str(tmp_path / "s.pt"))
    with torch.no_grad():
        torch.testing.assert_close(net2(x), want, atol=1e-5, rtol=1e-5)
    xs = np.random.default_rng(0).standard_normal((16, 32, 32, 3)).astype(np.float32)
    data, rep = cs.convert(net2, ck2, "BQ", xs, xs, log=lambda s: None)
    assert rep["kxk"]["ratio"] > 64
    assert ts.kxk_bytes(net2) == {k: rep["kxk"][k] for k in ("bytes", "float32_bytes", "ratio")}
    assert len(seprt.Model.from_bytes(data).predict(seprt.demo_images()[0], top_k=3)) == 3


@pytest.mark.parametrize("wfmt", ["stack", "stack_packed"])
@pytest.mark.parametrize("k,stride,pad,groups,cin,cout,d,m", [
    (3, 1, 1, 1, 8, 5, 4, 3), (3, 2, 1, 1, 6, 7, 3, 11), (5, 2, 2, 2, 8, 4, 2, 5), (1, 1, 0, 1, 9, 3, 9, 2),
    (3, 1, 0, 3, 9, 6, 1, 4)])
def test_reference_float_and_integer_paths_vs_torch(k, stride, pad, groups, cin, cout, d, m, wfmt):
    bank, index, alpha, bias = stack_tensors(cout, k, cin // groups, d, m)
    wts = stack_node_weights(wfmt, bank, index, alpha, bias)
    x = np.random.default_rng(0).standard_normal((2, 9, 7, cin)).astype(np.float32)
    w = expand(pack_pattern(bank), index, (cout, k, k, cin // groups)).astype(np.float32)
    tw = torch.from_numpy(w.transpose(0, 3, 1, 2) * alpha[:, None, None, None])
    want = F.conv2d(torch.from_numpy(x.transpose(0, 3, 1, 2)), tw, torch.from_numpy(bias), stride, pad, 1,
                    groups).numpy().transpose(0, 2, 3, 1)
    got = run_op("conv", [x], cout, wts, kernel=k, stride=stride, pad=pad, groups=groups)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    # integer path: exact int accumulators of the quantized input against the ±1 filters
    s, z = 0.05, 7
    got = run_op("conv", [x], cout, wts, qin=(s, z, 8), kernel=k, stride=stride, pad=pad, groups=groups)
    q = (quantize_act(x, s, z, 8) - z).astype(np.float64)
    acc = F.conv2d(torch.from_numpy(q.transpose(0, 3, 1, 2)), torch.from_numpy(w.transpose(0, 3, 1, 2)).double(),
                   None, stride, pad, 1, groups).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(got, acc.astype(np.float32) * (np.float32(s) * alpha) + bias)
