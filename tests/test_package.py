"""The wheel ships the demo model and the sample images."""
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contains_demo_model_and_samples(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    wheel = next(tmp_path.glob("seprt-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "seprt/data/demo.bin" in names
    assert sum(n.startswith("seprt/data/samples/") and n.endswith(".jpg") for n in names) == 10
    assert {"seprt/format.py", "seprt/engine.py", "seprt/kernels/conv.py"} <= names and not any(n.startswith(("tests/", "training/")) for n in names)
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    requires = [l for l in meta.splitlines() if l.startswith("Requires-Dist") and "extra ==" not in l]
    assert sorted(l.split()[1].split(">")[0] for l in requires) == ["numba", "numpy", "pillow"]
