"""Tiny end to end: full net -> stacked (k-means init) -> a few KD steps ->
seprt .bin (B and BQ) -> predict, with the converter's parity checks."""
import numpy as np
import torch

import seprt
from seprt import format as fmt
from converters import stacked as cs
from training import models, stacked as ts

SRC = {"model": models.ARCH_TO_SPEC["resnet20"], "model_kwargs": {}, "labels": [f"c{i}" for i in range(10)],
       "preprocess": {"size": [32, 32], "resize": "stretch", "mean": [0.5] * 3, "std": [0.25] * 3,
                      "channel_order": "RGB"}}


class _Batches(list):
    def set_epoch(self, e):
        pass


def test_train_convert_predict(tmp_path):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    teacher = models.resnet20().eval()
    net = models.resnet20()
    net.load_state_dict(teacher.state_dict())
    dm = ts.stack_modules(net, d=4, m=8, iters=3)
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
    xs = np.random.default_rng(0).standard_normal((16, 32, 32, 3)).astype(np.float32)
    data, rep = cs.convert(net2, ck2, "B", None, xs, log=lambda s: None)        # raises if parity fails
    assert rep["rel_diff"] < 1e-4
    data, rep = cs.convert(net2, ck2, "BQ", xs, xs, log=lambda s: None)
    g = fmt.from_bytes(data)
    assert {n.wfmt for n in g.nodes if n.op == "conv" and n.kernel > 1} == {"stack"}
    assert rep["kxk"]["ratio"] > 64 and rep["rel_diff"] < 0.25
    m = seprt.Model.from_bytes(data)
    assert m.info()["arch"] == "resnet20" and len(m.predict(seprt.demo_images()[0], top_k=3)) == 3
    # the plain model with the effective weights (the TFLite baseline's input) is the same function
    from training import modelckpt
    modelckpt.save(ts.expanded_checkpoint(str(tmp_path / "s.pt")), str(tmp_path / "e.pt"))
    plain = modelckpt.build_model(modelckpt.read(str(tmp_path / "e.pt")))
    xt = torch.from_numpy(xs.transpose(0, 3, 1, 2))
    with torch.no_grad():
        torch.testing.assert_close(plain(xt), net2(xt), atol=1e-5, rtol=1e-5)
