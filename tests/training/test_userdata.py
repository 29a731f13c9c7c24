"""training.userdata and training.spec: the user's images and model SPECs,
and the CLI's refusals (clear error, nothing written)."""
import io
import os
import tarfile

import numpy as np
import pytest

from seprt import image as seprt_image
from training import spec, train, userdata

from conftest import jpeg_bytes

PRE = {"size": [24, 20], "resize": "stretch", "mean": [0.5] * 3, "std": [0.25] * 3, "channel_order": "RGB"}


def folder(root, spec_: dict) -> str:
    """spec_: {relative path: bytes or (H, W) for a random jpeg, or None for an empty folder}."""
    rng = np.random.default_rng(0)
    for rel, v in spec_.items():
        p = os.path.join(root, rel)
        if v is None:
            os.makedirs(p, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(p), exist_ok=True)
        if isinstance(v, tuple):
            v = jpeg_bytes(rng.integers(0, 255, v + (3,), dtype=np.uint8))
        with open(p, "wb") as f:
            f.write(v)
    return str(root)


def as_tar(src: str, path: str) -> str:
    with tarfile.open(path, "w:gz") as tf:
        tf.add(src, arcname="data")
    return path


def test_any_size_resized_with_the_runtime_functions_folder_equals_tar(tmp_path):
    good = jpeg_bytes(np.random.default_rng(1).integers(0, 255, (50, 30, 3), dtype=np.uint8))
    src = folder(tmp_path / "d", {"cat/a.jpg": good, "cat/b.jpg": (7, 90), "more/dog/c.jpg": (200, 120),
                                  "cat/notes.txt": b"not an image"})
    ds = userdata.load(src, PRE, progress=False)
    assert ds.classes == ["cat", "dog"] and ds.images.shape == (3, 24, 20, 3) and ds.skipped == 0
    meta = {"preprocess.size": [24, 20], "preprocess.resize": "stretch"}
    assert np.array_equal(ds.images[0], seprt_image.resize(seprt_image.load_rgb(good), meta))
    tds = userdata.load(as_tar(src, str(tmp_path / "d.tar.gz")), PRE, progress=False)
    assert np.array_equal(tds.images, ds.images) and tds.labels.tolist() == ds.labels.tolist() == [0, 0, 1]
    # center_crop is recorded and applied as the runtime does
    cc = dict(PRE, resize="center_crop", crop_fraction=0.5)
    ds2 = userdata.load(src, cc, progress=False)
    assert np.array_equal(ds2.images[0], seprt_image.resize(seprt_image.load_rgb(good), {
        "preprocess.size": [24, 20], "preprocess.resize": "center_crop", "preprocess.crop_fraction": 0.5}))
    # a model's label order is kept
    assert userdata.load(src, PRE, labels=["dog", "cat", "eel"], progress=False).labels.tolist() == [1, 1, 0]


def test_unreadable_and_truncated_images_are_skipped_and_counted(tmp_path):
    good = jpeg_bytes(np.zeros((10, 10, 3), np.uint8))
    src = folder(tmp_path / "d", {"cat/a.jpg": good, "cat/trunc.jpg": good[:len(good) // 3],
                                  "cat/junk.png": b"\x89PNG nope", "dog/b.jpg": good})
    logs = []
    ds = userdata.load(src, PRE, progress=False, log=logs.append)
    assert len(ds) == 2 and ds.skipped == 2
    assert any("trunc.jpg" in s for s in ds.skipped_files) and any("junk.png" in s for s in ds.skipped_files)
    assert "skipped 2 of 4" in logs[0]


@pytest.mark.parametrize("layout,match", [
    ({"cat/a.jpg": (8, 8), "cat/b.jpg": (8, 8)}, "1 class folder"),
    ({"cat/a.jpg": (8, 8), "dog": None, "eel/a.jpg": (8, 8)}, "class folder.* with no images: (data/)?dog"),
    ({"cat/a.jpg": (8, 8), "dog/a.jpg": b"garbage"}, "dog have no decodable image"),
    ({"cat/a.jpg": (8, 8), "dog/a.jpg": (8, 8), "loose.jpg": (8, 8)}, "directly in the top folder"),
    ({}, "0 class folder"),
])
def test_bad_folders_are_refused(tmp_path, layout, match):
    src = folder(tmp_path / "d", layout)
    os.makedirs(src, exist_ok=True)
    with pytest.raises(ValueError, match=match):
        userdata.load(src, PRE, progress=False, log=lambda *a: None)
    if layout and "loose.jpg" not in layout:       # the same refusal from a tar
        with pytest.raises(ValueError, match=match):
            userdata.load(as_tar(src, str(tmp_path / "d.tar")), PRE, progress=False, log=lambda *a: None)


def test_split_fraction_is_seeded_per_class_and_cifar_rule(tmp_path):
    lay = {f"{c}/{i:04d}.jpg": (6, 6) for c in ("a", "b") for i in list(range(10)) + [4500, 4501]}
    lay["c/0000.jpg"] = (6, 6)                                   # a one-image class: training only
    ds = userdata.load(folder(tmp_path / "d", lay), PRE, progress=False)
    tr, va = userdata.split(ds, "fraction", 0.25, seed=3)
    tr2, va2 = userdata.split(ds, "fraction", 0.25, seed=3)
    assert va.files == va2.files and len(va) == 6 and set(tr.files).isdisjoint(va.files)
    assert sorted(np.bincount(va.labels, minlength=3).tolist()) == [0, 3, 3]
    assert userdata.split(ds, "fraction", 0.25, seed=4)[1].files != va.files
    tr, va = userdata.split(ds, "cifar")
    assert sorted(os.path.basename(f) for f in va.files) == ["4500.jpg", "4500.jpg", "4501.jpg", "4501.jpg"]
    with pytest.raises(ValueError, match="no validation images"):
        userdata.split(userdata.subset(ds, np.nonzero(ds.labels == 2)[0].tolist() + [0]), "fraction", 0.1)


# ------------------------------------------------------------------ SPECs

def test_spec_forms_and_errors(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import torch.nn as nn\n"
                 "def net(num_classes=10, width=4):\n    return nn.Sequential(nn.Conv2d(3, width, 3), nn.Flatten())\n"
                 "inst = nn.Conv2d(3, 2, 3)\nnot_a_module = 3\n"
                 "def returns_int():\n    return 1\n"
                 "def boom():\n    raise RuntimeError('bad config')\n")
    assert type(spec.build("training.models:sepnet_cifar")).__name__ == "SEPNet"
    assert spec.build(f"{f}:net", {"width": 2})[0].out_channels == 2
    assert spec.accepts(f"{f}:net", "num_classes") and not spec.accepts(f"{f}:boom", "num_classes")
    a, b = spec.build(f"{f}:inst"), spec.build(f"{f}:inst")
    assert a is not b and a.weight is not b.weight
    (tmp_path / "broken.py").write_text("import no_such_package_xyz\n")
    for s, match in [("training.models", "expected package.module:callable"),
                     ("no_such_pkg_xyz.mod:fn", "cannot import module 'no_such_pkg_xyz.mod'"),
                     (f"{tmp_path}/broken.py:fn", "importing .*broken.py failed .*ModuleNotFoundError"),
                     (f"{tmp_path}/missing.py:fn", "no such file"),
                     ("training.models:nope", "has no attribute 'nope'"),
                     (f"{f}:not_a_module", "not callable"),
                     (f"{f}:returns_int", "returned a int, not a torch.nn.Module"),
                     (f"{f}:boom", "failed .*RuntimeError: bad config")]:
        with pytest.raises(spec.SpecError, match=match):
            spec.build(s)


# ------------------------------------------------------------------ CLI refusals

@pytest.fixture
def photos(tmp_path):
    lay = {f"{c}/{i:04d}.jpg": (20 + i, 30) for c in ("cat", "dog") for i in range(6)}
    return folder(tmp_path / "photos", lay)


SMALL = ["--batch-size", "4", "--threads", "1", "--quiet", "--cache-dir", ""]


def _train(out, data, *extra, model="training.models:resnet20"):
    return train.main(["train", "--model", model, "--data", data, "--input-size", "16", "16", "--epochs", "1",
                       "--out", str(out), *SMALL, *extra])


def test_cli_refusals_write_nothing(tmp_path, photos, capsys):
    full = tmp_path / "full.pt"
    assert _train(full, photos) == 0
    before = os.listdir(tmp_path)
    capsys.readouterr()
    out = tmp_path / "p.pt"
    cases = [
        (["pattern", "--init", str(full), "--data", photos, "--method", "refine", "--out", str(out),
          "--binarize", "layer9.*"], "matches no k x k conv; the k x k convs are: conv1, stage1.block0.conv1"),
        (["pattern", "--init", str(full), "--data", photos, "--method", "refine", "--out", str(out),
          "--binarize", "prb"], "'prb': it matches no k x k conv.*presets: inner"),
        (["pattern", "--init", str(tmp_path / "nope.pt"), "--data", photos, "--method", "ste", "--out", str(out)],
         "no such checkpoint"),
        (["train", "--model", "nowhere_xyz:Net", "--data", photos, "--input-size", "16", "16", "--out", str(out)],
         "cannot import module 'nowhere_xyz'"),
        (["train", "--model", "training.models:resnet20", "--model-kwargs", '{"num_classes": 7}', "--data", photos,
          "--input-size", "16", "16", "--out", str(out)], r"outputs \(1, 7\) for one image, but the data has 2"),
    ]
    for argv, match in cases:
        rc = train.main(argv + SMALL)
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert __import__("re").search(match, err), err
    assert os.listdir(tmp_path) == before
    # an input is never overwritten
    with pytest.raises(SystemExit, match="is an input of this command"):
        train.main(["pattern", "--init", str(full), "--data", photos, "--method", "ste", "--epochs", "1",
                    "--out", str(full), *SMALL])


def test_pattern_resumes_to_the_same_weights(tmp_path, photos):
    full = tmp_path / "full.pt"
    assert _train(full, photos) == 0
    args = ["pattern", "--init", str(full), "--data", photos, "--method", "refine", "--epochs", "2", *SMALL]
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    assert train.main(args + ["--out", str(a)]) == 0
    assert train.main(args + ["--out", str(b), "--stop-after", "1"]) == 0
    assert train.main(args + ["--out", str(b)]) == 0
    import torch
    ca, cb = (torch.load(p, weights_only=True) for p in (a, b))
    assert [h["stage"] for h in cb["history"]] == [h["stage"] for h in ca["history"]]
    for k, v in ca["state_dict"].items():
        assert torch.allclose(v.float(), cb["state_dict"][k].float(), atol=1e-5), k
    with pytest.raises(SystemExit, match="refusing to resume"):
        train.main(args[:-len(SMALL)] + ["--lr", "0.5", "--out", str(b), "--epochs", "3", *SMALL])


def test_pattern_from_a_plain_state_dict_trained_elsewhere(tmp_path, photos):
    """The user's weights from their own training: --init STATE_DICT.pt --model SPEC --input-size."""
    import torch
    from training import modelckpt, models
    net = models.resnet20(num_classes=2)
    sd_path, out = tmp_path / "mine.pt", tmp_path / "p.pt"
    torch.save(net.state_dict(), sd_path)
    base = ["pattern", "--init", str(sd_path), "--data", photos, "--method", "ste", "--epochs", "0", "--out", str(out)]
    with pytest.raises(SystemExit, match="plain state_dict; give --model SPEC and --input-size"):
        train.main(base + SMALL)
    assert train.main(base + ["--model", "training.models:resnet20", "--input-size", "16", "16",
                              "--mean", "0.5", "0.5", "0.5", "--std", "0.2", "0.2", "0.2", *SMALL]) == 0
    ck = modelckpt.read(str(out))
    assert ck["stage"] == "bipattern" and ck["labels"] == ["cat", "dog"] and ck["model_kwargs"] == {"num_classes": 2}
    assert ck["preprocess"]["mean"] == [0.5] * 3 and ck["preprocess"]["size"] == [16, 16]
    for n in ck["binarized"]:       # epochs 0: exactly sign(W) * mean|W| of the user's weights
        w = net.get_submodule(n).weight.detach()
        assert torch.allclose(ck["state_dict"][n + ".weight"],
                              w.abs().flatten(1).mean(1).view(-1, 1, 1, 1) * torch.where(w >= 0, 1.0, -1.0))
