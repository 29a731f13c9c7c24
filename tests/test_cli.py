"""The seprt command line: output, JSON, exit codes, one-line errors."""
import json
import re
import shutil
import subprocess
import sys
import tarfile

import pytest

import seprt
from seprt import arch, format as fmt, variants
from seprt.cli import main

DEMO = seprt.demo_model_path()


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version():
    r = subprocess.run([sys.executable, "-m", "seprt", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == f"seprt {seprt.__version__}"


def test_info_json(capsys):
    code, out, _ = run(capsys, "info", DEMO, "--json")
    info = json.loads(out)
    assert code == 0
    for key in ("arch", "variant", "params", "bytes", "labels", "preprocess"):
        assert key in info
    assert info["variant"] in ("R", "B", "BQ")
    assert {"size", "resize", "mean", "std"} <= set(info["preprocess"])


def test_info_sepnet_t8_prints_layer_table_and_weight_count(tmp_path, capsys):
    p = tmp_path / "t8.bin"
    fmt.save(variants.random_graph(arch.get("sepnet-t8"), "BQ", "prb", calib_n=1), p)
    code, out, _ = run(capsys, "info", str(p))
    assert code == 0 and "1,337,792 weights" in out
    assert "module6.slice2.3x3" in out and "conv5" in out and "bin*" in out
    assert p.stat().st_size <= 1_300_000     # the paper's 1.3 MB for SEP-Net-BQ


def test_predict(capsys):
    img = seprt.demo_images()[0]
    code, out, _ = run(capsys, "predict", DEMO, img, "--top-k", "2", "--json")
    r = json.loads(out)
    assert code == 0 and len(r[img]) == 2 and {"label", "prob"} == set(r[img][0])
    code, out, _ = run(capsys, "predict", DEMO, img)
    assert code == 0 and out.startswith(img)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A labelled folder (nested one level deeper) and the same as a .tar.gz."""
    root = tmp_path_factory.mktemp("data")
    for p in seprt.demo_images():
        stem = p.rsplit("/", 1)[1].split(".")[0]          # <class>-<file number>
        for i in range(2):
            d = root / "val" / "test" / stem.rsplit("-", 1)[0]
            d.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, d / f"{stem}-{i}.jpg")
    tgz = root / "val.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        tf.add(root / "val" / "test", arcname="test")
    return root / "val", tgz


def test_eval_folder_and_tar_agree(labelled, capsys):
    folder, tgz = labelled
    code, out, _ = run(capsys, "eval", DEMO, str(folder), "--json")
    a = json.loads(out)
    code2, out2, _ = run(capsys, "eval", DEMO, str(tgz), "--json")
    b = json.loads(out2)
    assert code == code2 == 0 and a == b and a["n"] == 20
    assert 0 <= a["top1"] <= a["top5"] <= 1
    code, out, err = run(capsys, "eval", DEMO, str(folder), "--limit", "3")
    assert code == 0 and "n=3" in out and "top-1" in out


def test_limit_spreads_over_class_sorted_folders(labelled):
    """--limit / --check-limit / --calib-limit take images spread over the
    sorted list, so a class-sorted folder gives every class its share."""
    from seprt.folders import iter_labelled, spread
    assert spread(10, 3) == [0, 3, 6] and spread(4, None) == spread(4, 9) == [0, 1, 2, 3]
    assert spread(5, 5) == [0, 1, 2, 3, 4] and spread(0, 3) == []
    folder, tgz = labelled                                  # 2 copies of each demo image
    for src in (folder, tgz):
        everything = [(cls, name) for cls, name, _ in iter_labelled(str(src))]
        picked = [(cls, name) for cls, name, _ in iter_labelled(str(src), 10)]
        assert picked == everything[::2] and {c for c, _ in picked} == {c for c, _ in everything}
        assert len({c for c, _ in everything[:10]}) < len({c for c, _ in everything})   # the first 10 would not


def test_eval_skips_corrupt_images(labelled, tmp_path, capsys):
    folder, _ = labelled
    d = tmp_path / "cat"
    d.mkdir()
    (d / "bad.jpg").write_bytes(b"not a jpeg")
    shutil.copy(seprt.demo_images()[3], d / "good.jpg")
    code, out, err = run(capsys, "eval", DEMO, str(tmp_path), "--json")
    r = json.loads(out)
    assert code == 0 and r["n"] == 1 and r["skipped"] == 1 and "bad.jpg" in err


def test_bench_json(capsys):
    code, out, _ = run(capsys, "bench", DEMO, "--runs", "3", "--json", "--per-layer")
    r = json.loads(out)
    assert code == 0 and r["seprt"]["median_ms"] > 0 and r["first_call_ms"] > 0
    assert r["layers"] and abs(sum(l["share"] for l in r["layers"]) - 1) < 1e-6


def test_demo(capsys):
    code, out, _ = run(capsys, "demo")
    assert code == 0
    assert all(p.rsplit("/", 1)[1] in out for p in seprt.demo_images())
    assert re.search(r"^\d+/10 correct \(validation top-1 of this model: 88\.\d\d%", out, re.M)


@pytest.mark.parametrize("argv,match", [
    (["info", "/nonexistent.bin"], "cannot read model file"),
    (["info", __file__], "not a seprt model"),
    (["predict", DEMO, __file__], "not an image"),
    (["eval", DEMO, "/nonexistent"], "not a folder or a .tar"),
    (["bench", DEMO, "--tflite", "/nonexistent.tflite", "--runs", "1"], "nonexistent.tflite"),
    (["predict", DEMO, "x.jpg", "--top-k", "0"], "--top-k must be >= 1"),
])
def test_user_errors_are_one_line(argv, match, capsys):
    code, out, err = run(capsys, *argv)
    assert code in (1, 2) and match in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_errors_from_the_real_command_have_no_traceback():
    r = subprocess.run([sys.executable, "-m", "seprt", "info", __file__], capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.startswith("seprt: error:")


def test_bench_against_tflite_in_the_same_run(tmp_path, capsys):
    from converters.tflite import graph_to_tflite
    tfl = tmp_path / "demo.tflite"
    tfl.write_bytes(graph_to_tflite(fmt.load(DEMO)))
    code, out, err = run(capsys, "bench", DEMO, "--tflite", str(tfl), "--runs", "3", "--json")
    r = json.loads(out)
    assert code == 0, err
    assert r["tflite"]["median_ms"] > 0 and r["ratio_seprt_over_tflite"] > 0
    entry, paths = r["path"].split(": ", 1)        # the entry (compiled module or JIT) and the kernel paths
    assert entry in ("aot", "jit") and paths.startswith("dot-u8")
