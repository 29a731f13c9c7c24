"""Converters: BN folding, checkpoint -> .bin / .tflite with parity checks, bad input."""
import os
import shutil

import numpy as np
import pytest
import torch

import seprt
from converters import fold
from converters.__main__ import main
from seprt import format as fmt
from training import checkpoint, nets

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


def random_bn(conv, seed, negative=False):
    g = torch.Generator().manual_seed(seed)
    bn = conv.bn
    bn.weight.data = torch.rand(bn.num_features, generator=g) + 0.5
    if negative:
        bn.weight.data[::2] *= -1
    bn.bias.data = torch.randn(bn.num_features, generator=g)
    bn.running_mean = torch.randn(bn.num_features, generator=g)
    bn.running_var = torch.rand(bn.num_features, generator=g) + 0.1


@pytest.mark.parametrize("pattern", [False, True])
def test_bn_folding_is_exact(pattern):
    net = nets.build("sepnet-cifar").eval()
    conv = net.layers[nets.key("module3.slice1.3x3")]
    random_bn(conv, 0, negative=pattern)
    if pattern:
        conv.to_pattern()
    d = fold.fold_conv(conv)
    x = torch.randn(2, conv.in_channels, 9, 7)
    want = conv(x).detach().numpy().transpose(0, 2, 3, 1)
    from seprt import reference
    got = reference.conv2d(x.numpy().transpose(0, 2, 3, 1).copy(), d["weight"], 1, 1, conv.groups) + d["bias"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    if pattern:   # negative gamma flips patterns, alpha stays >= 0
        assert np.all(d["alpha"] >= 0)
        np.testing.assert_allclose(d["pattern"] * d["alpha"][:, None, None, None], d["weight"], rtol=1e-6)


def test_refined_checkpoint_keeps_trained_alpha(tmp_path, capsys):
    net = nets.build("resnet20").eval()
    nets.binarize(net, "all")
    conv = net.layers[nets.key("stage2.block1.conv1")]
    trained = torch.linspace(0.01, 0.2, conv.out_channels)
    conv.alpha.data = trained.clone()           # not mean|W| any more
    ckpt = checkpoint.make(net, stage="refined", binarize="all",
                           preprocess={"size": [32, 32], "resize": "stretch", "mean": [0.5] * 3,
                                       "std": [0.25] * 3, "channel_order": "RGB"})
    p = tmp_path / "refined.pt"
    checkpoint.save(ckpt, str(p))
    code, out, err = run(capsys, "seprt", p, "-o", tmp_path / "b.bin", "--variant", "B")
    assert code == 0, err
    g = fmt.load(tmp_path / "b.bin")
    node = next(n for n in g.nodes if n.name == "stage2.block1.conv1")
    bn = conv.bn
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
    (lambda c: c.update(arch="vgg16"), "vgg16"),
    (lambda c: c.pop("stage"), "stage"),
    (lambda c: c.update(extra=1), "extra"),
    (lambda c: c["state_dict"].pop("layers.fc.bias"), "fc.bias"),
    (lambda c: c["state_dict"].update({"layers.fc.weight": torch.zeros(3, 3)}), "shape"),
    (lambda c: c["state_dict"]["layers.conv1.weight"].fill_(float("nan")), "NaN"),
])
def test_bad_checkpoints(r20_ckpt, tmp_path, capsys, mutate, match):
    ckpt = torch.load(r20_ckpt, weights_only=True)
    mutate(ckpt)
    p = tmp_path / "bad.pt"
    torch.save(ckpt, p)
    one_line_error(capsys, ["seprt", p, "-o", tmp_path / "o.bin", "--variant", "R"], match, tmp_path, "o.bin")


def test_never_overwrites_an_input(r20_ckpt, tmp_path, capsys):
    before = r20_ckpt.read_bytes()
    code, _, err = run(capsys, "seprt", r20_ckpt, "-o", r20_ckpt, "--variant", "R")
    assert code == 1 and "is one of the inputs" in err and r20_ckpt.read_bytes() == before
    code, _, err = run(capsys, "init", "--arch", "resnet20", "-o", r20_ckpt)
    assert code == 1 and "never overwrites" in err and r20_ckpt.read_bytes() == before
