"""Converters: checkpoint (module or zoo) -> .bin / .tflite with parity checks, BN folding of
pattern convs, bad input."""
import os
import shutil

import numpy as np
import pytest
import torch

import seprt
from converters.__main__ import main
from converters.torch_import import from_torch
from seprt import format as fmt
from training import modelckpt, models, pattern

SAMPLES = os.path.dirname(seprt.demo_images()[0])


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def r20_ckpt(tmp_path_factory):
    p = tmp_path_factory.mktemp("ck") / "r20.pt"
    assert main(["init", "--arch", "resnet20", "-o", str(p), "--seed", "1"]) == 0
    return p


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    """The sample images in class folders (calibration and check data)."""
    d = tmp_path_factory.mktemp("calib")
    for p in seprt.demo_images():
        cls = os.path.basename(p).split(".")[0]
        os.makedirs(d / cls)
        shutil.copy(p, d / cls / "0.jpg")
    return d


PRE = {"size": [32, 32], "resize": "stretch", "mean": [0.5] * 3, "std": [0.25] * 3, "channel_order": "RGB"}


def random_bn(bn, seed, negative=False):
    g = torch.Generator().manual_seed(seed)
    bn.weight.data = torch.rand(bn.num_features, generator=g) + 0.5
    if negative:
        bn.weight.data[::2] *= -1
    bn.bias.data = torch.randn(bn.num_features, generator=g)
    bn.running_mean = torch.randn(bn.num_features, generator=g)
    bn.running_var = torch.rand(bn.num_features, generator=g) + 0.1


@pytest.mark.parametrize("negative", [False, True])
def test_bn_folding_into_pattern_convs_is_exact(negative):
    """W' = alpha s B: the pattern kept (flipped where s < 0), alpha' = |alpha s| >= 0."""
    torch.manual_seed(0)
    net = models.sepnet_cifar().eval()
    for i, m in enumerate(net.modules()):
        if isinstance(m, torch.nn.BatchNorm2d):
            random_bn(m, i, negative)
    names = pattern.binarize_modules(net, "prb")
    trained = {n: net.get_submodule(n).alpha.detach().clone() for n in names}
    pattern.unbinarize(net)                                   # plain convs holding alpha * sign(W)
    imp = from_torch(net, 32)
    d = imp.layers(",".join(names))["module3.slice1.conv3x3"]
    bn = net.module3.slice1.bn3x3
    s = (bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)).detach()
    np.testing.assert_array_equal(d["alpha"], (trained["module3.slice1.conv3x3"].double() * s).abs().float().numpy())
    np.testing.assert_array_equal(d["pattern"] * d["alpha"][:, None, None, None], d["weight"])
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    g = imp.graph("B", ",".join(names))
    got = seprt.Model.from_bytes(fmt.to_bytes(g)).logits(x)
    assert np.abs(got - imp.logits(x)).max() <= 1e-5 * np.abs(imp.logits(x)).max()


def test_refined_checkpoint_keeps_trained_alpha(tmp_path, capsys):
    net = models.resnet20().eval()
    pattern.binarize_modules(net, "all")
    conv = net.stage2.block1.conv1
    trained = torch.linspace(0.01, 0.2, conv.out_channels)
    conv.alpha.data = trained.clone()           # not mean|W| any more
    ckpt = modelckpt.make(net, spec=models.ARCH_TO_SPEC["resnet20"], model_kwargs={}, labels=[str(i) for i in range(10)],
                          preprocess=PRE, stage="pattern", method="refine")
    p = tmp_path / "refined.pt"
    modelckpt.save(ckpt, str(p))
    code, out, err = run(capsys, "seprt", p, "-o", tmp_path / "b.bin", "--variant", "B")
    assert code == 0, err
    g = fmt.load(tmp_path / "b.bin")
    node = next(n for n in g.nodes if n.name == "stage2.block1.conv1")
    bn = net.stage2.block1.bn1
    s = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
    np.testing.assert_allclose(node.scale, trained.numpy() * np.abs(s), rtol=1e-6)


def test_r_b_bq_and_tflite_from_one_checkpoint(r20_ckpt, calib, tmp_path, capsys):
    out = {}
    for variant in ("R", "B", "BQ"):
        p = tmp_path / f"r20-{variant}.bin"
        code, text, err = run(capsys, "seprt", r20_ckpt, "-o", p, "--variant", variant,
                              "--calib", calib, "--check", calib) if variant == "BQ" else \
            run(capsys, "seprt", r20_ckpt, "-o", p, "--variant", variant, "--check", calib)
        assert code == 0, err
        assert "check:" in text and "wrote" in text and "bytes per section" in text
        out[variant] = seprt.Model(p)
    assert out["BQ"].nbytes < out["B"].nbytes < out["R"].nbytes
    assert out["BQ"].meta["provenance.stage"] == "full" and out["BQ"].meta["provenance.binarize"] == "all"
    for quant in ("fp32", "int8"):
        p = tmp_path / f"r20-{quant}.tflite"
        code, text, err = run(capsys, "tflite", r20_ckpt, "-o", p, "--quant", quant, "--calib", calib)
        assert code == 0, err
        assert "TFLite fp32 vs PyTorch" in text, text
        assert p.stat().st_size > 0
    code, text, err = run(capsys, "seprt", r20_ckpt, "-o", tmp_path / "x.bin", "--variant", "BQ",
                          "--calib", calib, "--act-bits", "4")
    assert code == 0, err
    assert seprt.Model(tmp_path / "x.bin").info()["activation_bits"] == [4, 8]


def test_table1_statistic_printed(r20_ckpt, tmp_path, capsys):
    code, text, _ = run(capsys, "seprt", r20_ckpt, "-o", tmp_path / "b.bin", "--variant", "B")
    assert code == 0 and "Table 1 statistic" in text and "3x3:" in text


def one_line_error(capsys, argv, match, tmp_path, out_name):
    code, _, err = run(capsys, *argv)
    assert code == 1 and match in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / out_name).exists()
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_bad_inputs_leave_no_output(r20_ckpt, calib, tmp_path, capsys):
    o = tmp_path / "out.bin"
    one_line_error(capsys, ["seprt", r20_ckpt, "-o", o, "--variant", "BQ"], "needs --calib", tmp_path, "out.bin")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(capsys, ["seprt", r20_ckpt, "-o", o, "--variant", "BQ", "--calib", empty], "no images found",
                   tmp_path, "out.bin")
    bad = tmp_path / "bad" / "cat"
    bad.mkdir(parents=True)
    (bad / "x.jpg").write_bytes(b"garbage")
    one_line_error(capsys, ["seprt", r20_ckpt, "-o", o, "--variant", "BQ", "--calib", tmp_path / "bad"],
                   "x.jpg", tmp_path, "out.bin")
    one_line_error(capsys, ["seprt", tmp_path / "nope.pt", "-o", o, "--variant", "R"], "no such checkpoint",
                   tmp_path, "out.bin")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    one_line_error(capsys, ["seprt", junk, "-o", o, "--variant", "R"], "cannot read", tmp_path, "out.bin")


@pytest.mark.parametrize("mutate,match", [
    (lambda c: c.update(model="training.models:vgg16"), "vgg16"),
    (lambda c: c.pop("stage"), "stage"),
    (lambda c: c.update(extra=1), "extra"),
    (lambda c: c["state_dict"].pop("fc.bias"), "fc.bias"),
    (lambda c: c["state_dict"].update({"fc.weight": torch.zeros(3, 3)}), "shape"),
    (lambda c: c["state_dict"]["conv1.weight"].fill_(float("nan")), "NaN"),
])
def test_bad_checkpoints(r20_ckpt, tmp_path, capsys, mutate, match):
    ckpt = torch.load(r20_ckpt, weights_only=True)
    mutate(ckpt)
    p = tmp_path / "bad.pt"
    torch.save(ckpt, p)
    one_line_error(capsys, ["seprt", p, "-o", tmp_path / "o.bin", "--variant", "R"], match, tmp_path, "o.bin")


def test_never_overwrites_an_input(r20_ckpt, tmp_path, capsys):
    before = r20_ckpt.read_bytes()
    code, _, err = run(capsys, "seprt", r20_ckpt, "-o", r20_ckpt, "--variant", "R", "--force")
    assert code == 1 and "is one of the inputs" in err and r20_ckpt.read_bytes() == before
    code, _, err = run(capsys, "seprt", r20_ckpt, "-o", r20_ckpt, "--variant", "R")
    assert code == 1 and "refusing to overwrite" in err and r20_ckpt.read_bytes() == before
    # an existing output stays unless --force
    out = tmp_path / "keep.bin"
    out.write_bytes(b"mine")
    for cmd in (["seprt", r20_ckpt, "-o", out, "--variant", "R"], ["tflite", r20_ckpt, "-o", out, "--quant", "fp32"]):
        code, _, err = run(capsys, *cmd)
        assert code == 1 and "exists; refusing to overwrite it (use --force)" in err and out.read_bytes() == b"mine"
    code, _, err = run(capsys, "seprt", r20_ckpt, "-o", out, "--variant", "R", "--force")
    assert code == 0, err
    assert seprt.Model(out).info()["arch"] == "resnet20"
    code, _, err = run(capsys, "init", "--arch", "resnet20", "-o", r20_ckpt)
    assert code == 1 and "never overwrites" in err and r20_ckpt.read_bytes() == before


def test_checked_top1_records_how_many_images(tmp_path):
    """provenance.val_top1 comes with provenance.val_images (u32)."""
    from converters.convert import write_checked
    from tests.helpers import tiny_graph
    g = tiny_graph()
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]], np.float32)      # predicts no, yes, no
    report, out = {}, tmp_path / "t.bin"
    write_checked(g, fmt.to_bytes(g), logits, ["no", "yes", "yes"], "VAL", report, str(out), [], lambda s: None)
    m = fmt.load(out).meta
    assert report["val_top1"] == pytest.approx(2 / 3) and m["provenance.val_top1"] == pytest.approx(2 / 3)
    assert m["provenance.val_images"] == 3
