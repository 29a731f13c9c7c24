"""`python -m training.actquant` on a tiny archive: a pattern checkpoint refined
with 4-bit fake quantizers, whose quantizers are the runtime's: the converted
`--act-bits 4` file has the same scales and zero points and computes the same
logits as the PyTorch model with the quantizers on."""
import numpy as np
import pytest
import torch

import seprt
from training import actquant, modelckpt

from conftest import LABELS, jpeg_bytes


def _common(tiny_tar, tmp_path):
    return ["--data", tiny_tar, "--cache-dir", str(tmp_path / "cache"), "--threads", "1", "--batch-size", "8"]


def _calib_folder(path, n=3, seed=1):
    rng = np.random.default_rng(seed)
    for ci, c in enumerate(LABELS[:4]):
        (path / c).mkdir(parents=True)
        for i in range(n):
            a = np.clip(rng.normal(30 + ci * 40, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
            (path / c / f"{i}.jpg").write_bytes(jpeg_bytes(a))
    return str(path)


@pytest.mark.parametrize("arch,epochs,extra", [
    ("resnet20", 2, []),
    # sepnet-cifar: its PRBs' 1x1 and 3x3 read one 4-bit value; one step only (from random
    # init, 4 bits leave whole channels constant per batch, and the BN statistics of a
    # few tiny steps overflow: real runs start from a trained checkpoint)
    ("sepnet-cifar", 1, ["--train-limit", "8"])])
def test_refined_checkpoint_converts_to_the_same_quantizers(arch, epochs, extra, tiny_tar, tmp_path):
    from converters.__main__ import main as convert
    from converters.convert import load_images, preprocess_meta
    full, ste, out = tmp_path / "full.pt", tmp_path / "ste.pt", tmp_path / "a4.pt"
    _checkpoints(arch, full, ste)
    calib = _calib_folder(tmp_path / "calib")
    before = ste.read_bytes()
    assert actquant.main(["--ckpt", str(ste), "--teacher", str(full), "--act-bits", "4", "--calib", calib,
                          "--epochs", str(epochs), "--lr", "1e-5", "-o", str(out), *extra,
                          *_common(tiny_tar, tmp_path)]) == 0
    assert ste.read_bytes() == before                     # the input is kept
    ck = modelckpt.read(str(out))
    assert ck["stage"] == "pattern" and ck["method"] == "ste" and ck["binarized"]
    assert [h["stage"] for h in ck["history"]][-epochs:] == ["act4"] * epochs

    # the PyTorch model with its quantizers, calibrated as the command does
    net = modelckpt.build_model(ck, binarized_as_patterns=True)
    x, _ = load_images(calib, preprocess_meta(ck["preprocess"]), "calib", 256)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    groups = actquant.quantized_inputs(net, xt[:2], 4)
    aq = actquant.ActQuant(net, groups)
    qp = aq.calibrate(x)
    with torch.no_grad():
        float_logits = net.eval()(xt).numpy()
        aq.enabled = True
        want = net(xt).numpy()

    binf = tmp_path / "a4.bin"
    assert convert(["seprt", str(out), "-o", str(binf), "--variant", "BQ", "--act-bits", "4",
                    "--calib", calib]) == 0
    m = seprt.Model(str(binf))
    g = m.graph
    read = {n.name: g.values[n.inputs[0]] for n in g.nodes if n.op in ("conv", "fc")}
    group_of = {n: i for i, (names, _) in enumerate(groups) for n in names}
    assert set(read) == set(group_of)         # graph node names are the module names
    assert {n for n, v in read.items() if v.q_bits == 4} == {n for names, b in groups if b == 4 for n in names}
    for name, v in read.items():              # the runtime's quantizers are the ones trained with
        s_pt, z_pt = qp[group_of[name]]
        assert v.q_bits == groups[group_of[name]][1] and v.q_zero == z_pt, name
        assert v.q_scale == pytest.approx(s_pt, rel=1e-5), name
    if arch != "resnet20":      # random-init sepnet-cifar's logits hardly depend on its activations
        return
    # the same quantizers, so seprt is much closer to the simulated model than to
    # the float one; not equal: float32 sums (PyTorch) and exact integer sums
    # (seprt) round a few values to neighbouring 4-bit steps, and those spread
    got = m.logits(x)
    err, err_float = np.abs(got - want).max(), np.abs(got - float_logits).max()
    assert err <= 0.1 * np.abs(want).max() and err <= 0.5 * err_float, (err, err_float)


def _checkpoints(arch, full, pat):
    """A random-init Full checkpoint of `arch` and its pattern checkpoint (every
    k x k conv binarized, STE): what the command starts from, without the tiny
    archive's few training steps (which can leave sepnet-cifar's BN statistics
    degenerate)."""
    from training import models, pattern
    torch.manual_seed(0)
    m = models.build(arch).eval()
    pre = {"size": [32, 32], "resize": "stretch", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
           "channel_order": "RGB"}
    kw = dict(spec=models.ARCH_TO_SPEC[arch], model_kwargs={}, labels=LABELS, preprocess=pre)
    modelckpt.save(modelckpt.make(m, stage="full", **kw), str(full))
    pattern.binarize_modules(m, "all", "ste")
    modelckpt.save(modelckpt.make(m, stage="pattern", method="ste", **kw), str(pat))


def test_refuses_what_it_cannot_refine(tmp_path):
    full, pat = tmp_path / "full.pt", tmp_path / "pat.pt"
    _checkpoints("resnet20", full, pat)
    calib = _calib_folder(tmp_path / "calib")
    with pytest.raises(SystemExit, match="refines a pattern one"):
        actquant.main(["--ckpt", str(full), "--teacher", str(full), "--calib", calib, "-o", str(tmp_path / "o.pt")])
    with pytest.raises(SystemExit, match="must differ"):
        actquant.main(["--ckpt", str(full), "--teacher", str(full), "--calib", calib, "-o", str(full)])
