"""kernels.aot: the engine's entry points compiled ahead of time compute the
same bits as numba's JIT dispatchers (threads 1 and 2, whole zoo models of
every weight format), release the GIL like them, and every way the compiled
module can be missing falls back to the JIT or says why."""
import re
import threading
from pathlib import Path

import numpy as np
import pytest

import seprt
from seprt.kernels import aot
from seprt.kernels.jit import SOURCE_HASH

ROOT = Path(__file__).resolve().parents[1]
# binary with u8 activations, 8-bit stacked, binary with f32 activations (popcount planes), real f32
MODELS = ["sepnet-cifar-BQ", "resnet20-stacked-d4m32-64-d2m128-BQ", "resnet20-B", "resnet20-R"]


@pytest.fixture(scope="module")
def fns(tmp_path_factory):
    """The compiled module for this CPU, built here from scratch into an empty
    cache, then loaded as every later Model loads it. CI installs what
    building needs (C and C++ compilers, Python's headers)."""
    cache = tmp_path_factory.mktemp("aot-cache")
    stale = cache / "seprt_engine_00000000_000000000000.so"            # another kernel source: removed
    other = cache / f"seprt_engine_{SOURCE_HASH[:8]}_000000000000.so"   # this source, another target: kept
    stale.write_bytes(b"old")
    other.write_bytes(b"other")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEPRT_AOT", "1")
        mp.setenv("SEPRT_CACHE_DIR", str(cache))
        mp.setattr(aot, "_loaded", {})
        f = aot.engine_functions()
        assert f.path == "aot" and Path(f.module) == aot.module_path() and f.why is None
        assert not stale.exists() and other.read_bytes() == b"other"
        assert aot.engine_functions() is f                             # once per process and setting
        mod = aot.load(Path(f.module))                                  # what a new process does
        assert all(callable(getattr(mod, e)) for e in aot.ENTRY_POINTS)
    return f


def _model(name, threads, entry, fns=None):
    """A zoo model on the JIT, or on the module `fns` (the fixture's)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEPRT_AOT", "1" if entry == "aot" else "0")
        if fns is not None:
            mp.setenv("SEPRT_CACHE_DIR", str(Path(fns.module).parent))
        m = seprt.Model(str(ROOT / "models" / f"{name}.bin"), threads=threads)
        assert m._fast.fns.path == entry                      # resolved on first use, under these settings
    return m


@pytest.mark.parametrize("name", MODELS)
def test_aot_bit_exact_to_jit(fns, name):
    jit = _model(name, 1, "jit")
    x = np.random.default_rng(1).standard_normal((3,) + jit.input_shape).astype(np.float32)
    want = jit.logits(x)
    for threads in (1, 2):        # 2: one image split across a team (team_worker), three images by image
        m = _model(name, threads, "aot", fns)
        np.testing.assert_array_equal(m.logits(x[:1]), want[:1])
        np.testing.assert_array_equal(m.logits(x), want)


def test_aot_releases_the_gil(fns):
    """A team worker waits (up to 20 s) for a new job in the compiled code; the
    main thread closes the team meanwhile. Holding the GIL, the worker would
    time out first and return the old generation (0)."""
    ctl = np.zeros(24, np.int64)
    i64, f32 = np.zeros(1, np.int64), np.zeros((1, 1), np.float32)
    args = (np.zeros((1, 1), np.int64), f32, 0, 0, f32, 0, f32, 0, np.zeros(1, np.float32), np.zeros(1, np.uint8),
            np.zeros(1, np.uint64), np.zeros(1, np.int32), np.zeros(1, np.float32), np.zeros(1, np.int8),
            np.zeros(1, np.uint64), np.zeros(1, np.int32), i64, np.zeros(1, np.int32), i64, np.zeros(1, np.float32),
            1, 2, i64)
    got = []
    t = threading.Thread(target=lambda: got.append(fns.team_worker(ctl, 0, 20_000_000_000, *args)))
    t.start()
    fns.close_team(ctl)
    t.join()
    assert got == [1] and ctl[1] == 1


def test_engine_rejects_what_the_module_cannot_check(fns):
    """The compiled wrappers trust their arguments' dtypes (numba's dispatcher
    would compile another version instead): the engine checks its input."""
    m = _model("resnet20-BQ", 1, "aot", fns)
    x = np.zeros((1,) + m.input_shape, np.float32)
    for bad in (x.astype(np.float64), np.zeros((1, 32, 32, 6), np.float32)[..., ::2], x[..., :2], x[:0]):
        with pytest.raises(ValueError, match="float32 C-contiguous"):
            m._fast.run(bad)


def test_module_key_and_cache_dir(monkeypatch, tmp_path):
    name = aot.module_name()
    assert re.fullmatch(r"seprt_engine_[0-9a-f]{8}_[0-9a-f]{12}", name) and name[13:21] == SOURCE_HASH[:8]
    monkeypatch.setenv("NUMBA_CPU_NAME", "generic")              # another target: another module
    assert aot.module_name() != name
    monkeypatch.setenv("SEPRT_CACHE_DIR", str(tmp_path))
    assert aot.cache_dir() == tmp_path and aot.module_path().parent == tmp_path
    monkeypatch.delenv("SEPRT_CACHE_DIR")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "nc"))
    got = aot.cache_dir()
    assert got.parent == tmp_path / "nc" / "seprt" and re.fullmatch(r"[0-9a-f]{8}", got.name)


def test_unloadable_files_are_not_modules(tmp_path):
    assert aot.load(tmp_path / "missing.so") is None
    bad = tmp_path / "seprt_engine_0000000000000000.so"
    bad.write_bytes(b"\x7fELF not really")
    assert aot.load(bad) is None
    other = tmp_path / "seprt_engine_1111111111111111.py"   # loads, but has no entry points
    other.write_text("x = 1\n")
    assert aot.load(other) is None


def test_fallback_to_jit_and_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("SEPRT_CACHE_DIR", str(tmp_path))        # nothing built here
    monkeypatch.setattr(aot, "_loaded", {})
    monkeypatch.setattr(aot, "missing_tools", lambda: "no C compiler (cc)")
    monkeypatch.setenv("SEPRT_AOT", "1")
    with pytest.raises(RuntimeError, match="SEPRT_AOT=1 but the compiled engine is unavailable: .*no C compiler"):
        aot.engine_functions()
    monkeypatch.setenv("SEPRT_AOT", "auto")
    f = aot.engine_functions()
    assert f.path == "jit" and "no C compiler" in f.why and f.run_program is seprt.engine.run_program
    m = seprt.Model(str(ROOT / "models" / "resnet20-BQ.bin"))
    assert m._fast.fns.path == "jit"
    monkeypatch.setenv("SEPRT_AOT", "0")
    assert aot.engine_functions().why == "SEPRT_AOT=0"
    monkeypatch.setenv("SEPRT_AOT", "yes")
    with pytest.raises(ValueError, match="SEPRT_AOT='yes': expected auto, 0 or 1"):
        aot.engine_functions()
    assert list(tmp_path.iterdir()) == []


def test_missing_compilers_are_found_without_building(monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert aot.missing_tools().startswith("no C compiler (/nonexistent/cc")
    monkeypatch.delenv("CC")
    monkeypatch.setenv("CXX", "/nonexistent/c++ -O2")
    assert aot.missing_tools().startswith("no C++ compiler (/nonexistent/c++")


def test_a_failed_build_is_not_retried(monkeypatch, tmp_path):
    monkeypatch.setenv("SEPRT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(aot, "_loaded", {})
    monkeypatch.setattr(aot, "missing_tools", lambda: None)
    builds = []

    def fail(path):
        builds.append(path)
        raise RuntimeError("link failed")
    monkeypatch.setattr(aot, "build", fail)
    f = aot.engine_functions()
    assert f.path == "jit" and f.why == "RuntimeError: link failed" and len(builds) == 1
    marker = aot.module_path().with_name(aot.module_path().name + ".failed")
    assert marker.read_text() == "RuntimeError: link failed"
    monkeypatch.setattr(aot, "_loaded", {})                     # a new process: the JIT, no build
    f = aot.engine_functions()
    assert f.path == "jit" and "an earlier build failed" in f.why and "delete it to retry" in f.why
    assert len(builds) == 1
    monkeypatch.setenv("SEPRT_AOT", "1")                         # asked for: built again
    with pytest.raises(RuntimeError, match="unavailable: RuntimeError: link failed"):
        aot.engine_functions()
    assert len(builds) == 2


def test_bench_names_the_entry(fns, capsys):
    from seprt.cli import engine_paths
    m = _model("resnet20-BQ", 1, "aot", fns)
    assert engine_paths(m).startswith("aot: ")
    assert engine_paths(_model("resnet20-BQ", 1, "jit")).startswith("jit: ")
