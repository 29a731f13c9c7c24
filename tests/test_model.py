"""seprt.Model API and image handling."""
import io
import threading

import numpy as np
import pytest
from PIL import Image

import seprt
from seprt import format as fmt
from seprt import image

from helpers import small_graph

SAMPLES = seprt.demo_images()


@pytest.fixture(scope="module")
def model():
    return seprt.Model(seprt.demo_model_path())


@pytest.fixture(scope="module")
def r_model(tmp_path_factory):
    p = tmp_path_factory.mktemp("m") / "resnet20-R.bin"
    fmt.save(small_graph("R", "resnet20", seed=3), p)
    return seprt.Model(p, engine="reference")


def test_predict_shapes_and_order(model):
    r = model.predict(SAMPLES[0], top_k=3)
    assert len(r) == 3 and all(l in model.labels for l, _ in r)
    probs = [p for _, p in r]
    assert probs == sorted(probs, reverse=True) and 0 <= probs[-1] <= probs[0] <= 1
    assert len(model.predict(SAMPLES[0], top_k=100)) == 10


def test_predict_inputs_agree(model):
    """Path, bytes, PIL image and uint8 array of the same picture give the same answer."""
    p = SAMPLES[3]
    rgb = np.asarray(Image.open(p).convert("RGB"))
    results = [model.predict(src) for src in (p, open(p, "rb").read(), Image.open(p), rgb)]
    assert all(r == results[0] for r in results)


def test_preprocess_is_exactly_what_logits_takes(r_model):
    x = r_model.preprocess(SAMPLES[1])
    assert x.shape == (1, 32, 32, 3) and x.dtype == np.float32
    z = r_model.logits(x)
    p = dict(r_model.predict(SAMPLES[1], top_k=10))
    e = np.exp(z[0] - z[0].max())
    for i, label in enumerate(r_model.labels):
        assert p[label] == pytest.approx(e[i] / e.sum(), rel=1e-6)


def test_predict_batch_matches_single(r_model):
    batch = r_model.predict_batch(SAMPLES[:4], top_k=2)
    for img, r in zip(SAMPLES[:4], batch):
        single = r_model.predict(img, top_k=2)
        assert [l for l, _ in r] == [l for l, _ in single]
        assert np.allclose([p for _, p in r], [p for _, p in single], rtol=1e-5)
    assert r_model.predict_batch([]) == []


def test_embed(r_model):
    e = r_model.embed(SAMPLES[0])
    assert e.shape == (64,) and e.dtype == np.float32 and np.all(e >= 0)


def test_info(model):
    i = model.info()
    assert i["arch"] == "sepnet-cifar" and i["variant"] == "BQ" and i["bytes"] == model.nbytes
    assert sum(i["sections"].values()) == i["bytes"]
    assert i["params"] == sum(r["params"] for r in i["layers"])
    assert i["preprocess"]["size"] == [32, 32] and len(i["labels"]) == 10


def test_from_bytes_equals_file(model):
    data = open(seprt.demo_model_path(), "rb").read()
    m = seprt.Model.from_bytes(data)
    x = model.preprocess(SAMPLES[2])
    assert np.array_equal(m.logits(x), model.logits(x))
    with pytest.raises(seprt.FormatError):
        seprt.Model.from_bytes(data[:-1])


def test_bad_arguments(model):
    with pytest.raises(ValueError, match="engine"):
        seprt.Model(seprt.demo_model_path(), engine="gpu")
    with pytest.raises(ValueError, match="threads"):
        seprt.Model(seprt.demo_model_path(), threads=0)
    with pytest.raises(ValueError, match="top_k"):
        model.predict(SAMPLES[0], top_k=0)


@pytest.mark.parametrize("x,match", [
    (np.zeros((1, 32, 32, 3), np.float64), "float32"),
    (np.zeros((1, 3, 32, 32), np.float32), "shape"),
    (np.zeros((32, 32, 3), np.float32), "shape"),
    (np.zeros((0, 32, 32, 3), np.float32), "empty batch"),
    (np.zeros((1, 32, 64, 3), np.float32)[:, :, ::2], "C-contiguous"),
    (np.full((1, 32, 32, 3), np.nan, np.float32), "NaN"),
    ([[1.0]], "numpy array"),
])
def test_logits_rejects_bad_tensors(model, x, match):
    with pytest.raises(ValueError, match=match):
        model.logits(x)


def test_concurrent_predict_is_identical(model):
    want = model.logits(np.concatenate([model.preprocess(p) for p in SAMPLES]))
    out = {}

    def work(i):
        out[i] = model.logits(np.concatenate([model.preprocess(p) for p in SAMPLES]))
    ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert all(np.array_equal(v, want) for v in out.values())


# ------------------------------------------------------------------ images

def encode(im, fmt_="PNG", **kw):
    b = io.BytesIO()
    im.save(b, fmt_, **kw)
    return b.getvalue()


def test_image_modes_convert_to_rgb():
    base = Image.open(SAMPLES[0]).convert("RGB")
    for mode in ("L", "RGBA", "LA", "P", "CMYK", "I;16", "1", "I"):
        im = base.convert(mode) if mode not in ("I;16", "I") else base.convert("L").convert(mode)
        rgb = image.load_rgb(im)
        assert rgb.shape == (32, 32, 3) and rgb.dtype == np.uint8, mode
    # 16-bit grayscale: the full 0..65535 range maps to 0..255
    a16 = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    rgb = image.load_rgb(encode(Image.fromarray(a16)))
    assert rgb.max() >= 250 and rgb[0, 0, 0] == 0
    # transparency composites on white
    rgba = np.zeros((4, 4, 4), np.uint8)
    assert image.load_rgb(Image.fromarray(rgba, "RGBA")).min() == 255


def test_exif_orientation_is_applied():
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = 255                                    # left half white
    im = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6                                   # rotate 90 CW on display
    rgb = image.load_rgb(encode(im, "JPEG", exif=exif.tobytes()))
    assert rgb.shape == (40, 20, 3)
    assert rgb[:20].mean() > 200 and rgb[20:].mean() < 50  # white half now on top


def test_bad_images(tmp_path):
    jpeg = open(SAMPLES[0], "rb").read()
    cases = {
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "text.jpg": b"this is not an image\n" * 10,
        "empty.png": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(seprt.ImageError):
            image.load_rgb(str(tmp_path / name))
    for arr, match in ((np.full((4, 4, 3), np.nan, np.float32), "NaN"),
                       (np.zeros((4, 4), np.uint8), r"\(H, W, 3\)"),
                       (np.zeros((4, 4, 4), np.uint8), r"\(H, W, 3\)"),
                       (np.zeros((4, 4, 3), np.float32), "uint8")):
        with pytest.raises(seprt.ImageError, match=match):
            image.load_rgb(arr)
    with pytest.raises(seprt.ImageError, match="no such file"):
        image.load_rgb(str(tmp_path / "missing.jpg"))
    with pytest.raises(seprt.ImageError, match="unsupported image type"):
        image.load_rgb(42)
    assert issubclass(seprt.ImageError, ValueError) and issubclass(seprt.FormatError, ValueError)


def test_decompression_bomb_refused_before_decoding(monkeypatch, tmp_path):
    p = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300 * 200 - 1)
    with pytest.raises(seprt.ImageError, match="decompression bomb"):
        image.load_rgb(str(p))
    with pytest.raises(seprt.ImageError, match="MAX_IMAGE_PIXELS"):
        image.load_rgb(np.zeros((200, 300, 3), np.uint8))


def test_real_bomb_header_is_refused(tmp_path):
    """A PNG whose header claims 20000 x 20000 (400 MP, above the default limit)."""
    import struct
    import zlib
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    with pytest.raises(seprt.ImageError, match="decompression bomb"):
        image.load_rgb(png)


def test_large_photo_below_limit_works(model):
    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (3000, 4000, 3), np.uint8))
    data = encode(big, "JPEG", quality=85)
    r = model.predict(data, top_k=1)
    assert len(r) == 1


def test_center_crop_policy():
    meta = {"preprocess.size": [4, 4], "preprocess.resize": "center_crop", "preprocess.crop_fraction": 0.5,
            "preprocess.mean": [0, 0, 0], "preprocess.std": [1, 1, 1]}
    a = np.zeros((16, 32, 3), np.uint8)
    a[4:12, 12:20] = 255          # a bright centre square survives the crop
    out = image.resize(a, meta)
    assert out.shape == (4, 4, 3) and out[1:3, 1:3].min() > 200
