"""The engine's entry points compiled ahead of time into a CPython extension.

A JIT-cached numba function still costs, on its first call in a process,
numba's typing and target set-up: ~0.2 s and ~50 MB of RSS (Zen 2, numba
0.68), more than everything else seprt does on start-up. The same functions
compiled once by numba's AOT compiler (`numba.pycc`) into an extension module
load like any other: no numba compiler in the process.

    fns = engine_functions()      # .run_program, .team_worker, .post_job, .close_team, .path
    fns.path                      # "aot" (the compiled module) or "jit" (numba dispatchers)

The module is built on first use into the cache directory, keyed by
everything its machine code depends on (`module_name`): the kernels' source
hash, the dot-tile ISA, LLVM's target triple, CPU name and features (numba's
own cache key; NUMBA_CPU_NAME / NUMBA_CPU_FEATURES honoured as by the JIT),
numba's version and the Python ABI. Building needs Python's headers and a C
and a C++ compiler (numba.pycc checks for both); without them, or with
SEPRT_AOT=0, the engine runs numba's JIT dispatchers: the same bits.
The compiled wrappers do not check their arguments' dtypes (a dispatcher
would compile another version): FastEngine passes only its own arrays and
checks the input batch.

    SEPRT_AOT        auto (default): load or build, else JIT | 0: JIT only |
                     1: load or build, an error if it cannot be built

A build that fails once the tools are there (a link error, a cache on a
noexec file system) leaves <module>.failed with the reason beside the
module: later processes go straight to the JIT instead of failing the same
30 s build each time (SEPRT_AOT=1 retries; deleting the file does too).
    SEPRT_CACHE_DIR  where modules go (default: $NUMBA_CACHE_DIR/seprt/<install>,
                     else this package's __pycache__ when writable, else
                     ~/.cache/seprt/<install>; see cache_dir)
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sysconfig
import tempfile
import threading
import warnings
from pathlib import Path
from types import SimpleNamespace

from .intrinsics import dot_isa
from .jit import SOURCE_HASH

ENTRY_POINTS = ("run_program", "team_worker", "post_job", "close_team")
_MODES = ("auto", "0", "1")


def _arr(dtype: str, ndim: int = 1) -> str:
    """numba signature text of a C-contiguous array: _arr("f4", 2) -> "f4[:, ::1]"."""
    return f"{dtype}[{', '.join([':'] * (ndim - 1) + ['::1'])}]"


# run_program's arguments after the batch (see engine.run_program):
# arenas fbuf f32, abuf u8, pbuf u64, qbuf i32; weights wf32, wi8, wu64, wi32, aux i64;
# scratch acc32 i32, acc64 i64, accf f32
_ARENAS = [_arr("f4"), _arr("u1"), _arr("u8"), _arr("i4"), _arr("f4"), _arr("i1"), _arr("u8"), _arr("i4"),
           _arr("i8"), _arr("i4"), _arr("i8"), _arr("f4")]
# prog (n, WIDTH) i64; x (N, in_size) f32; in_off, in_size; logits (N, K) f32, logits_off; embed (N, D) f32, embed_off
_BATCH = [_arr("i8", 2), _arr("f4", 2), "i8", "i8", _arr("f4", 2), "i8", _arr("f4", 2), "i8"]
SIGNATURES = {
    # ... arenas, part, nparts, sync i64[8], trace i64 (n * nparts * 2 or 0)
    "run_program": f"void({', '.join(_BATCH + _ARENAS + ['i8', 'i8', _arr('i8'), _arr('i8')])})",
    # ctl i64[24], last generation, spin ns, then run_program's arguments but sync -> the last job's generation
    "team_worker": f"i8({', '.join([_arr('i8'), 'i8', 'i8'] + _BATCH + _ARENAS + ['i8', 'i8', _arr('i8')])})",
    "post_job": f"void({_arr('i8')}, i8, i8)",                  # ctl, images, tracing
    "close_team": f"void({_arr('i8')})",                        # ctl
}


def mode() -> str:
    m = os.environ.get("SEPRT_AOT", "auto").strip().lower() or "auto"
    if m not in _MODES:
        raise ValueError(f"SEPRT_AOT={m!r}: expected auto, 0 or 1")
    return m


def target() -> tuple[str, str, str]:
    """(triple, cpu name, features) LLVM compiles for: numba's JIT cache key."""
    import llvmlite.binding as ll
    from numba.core import config
    from numba.core.codegen import get_host_cpu_features
    cpu = config.CPU_NAME or ll.get_host_cpu_name()
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()
    return ll.get_process_triple(), cpu, features


def module_name() -> str:
    """seprt_engine_<source: 8 hex>_<the rest: 12 hex>: one name per machine
    code the build can produce; the first part is the kernels' source hash."""
    import numba
    key = repr((SOURCE_HASH, dot_isa(), target(), numba.__version__, sysconfig.get_config_var("EXT_SUFFIX"),
                sorted(SIGNATURES.items())))
    return f"seprt_engine_{SOURCE_HASH[:8]}_{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def cache_dir() -> Path:
    """SEPRT_CACHE_DIR as given; else $NUMBA_CACHE_DIR/seprt/<install> or, when
    this package's __pycache__ is not writable, ~/.cache/seprt/<install>, where
    <install> tags this copy of seprt (as numba mirrors source paths in its
    cache): two installs sharing a cache never remove each other's module."""
    if os.environ.get("SEPRT_CACHE_DIR"):
        return Path(os.environ["SEPRT_CACHE_DIR"])
    here = Path(__file__).resolve().parent
    install = hashlib.sha256(str(here).encode()).hexdigest()[:8]
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"]) / "seprt" / install
    try:
        (here / "__pycache__").mkdir(exist_ok=True)
        if os.access(here / "__pycache__", os.W_OK):
            return here / "__pycache__"
    except OSError:
        pass
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "seprt" / install


def module_path(directory: Path | None = None) -> Path:
    return (directory or cache_dir()) / (module_name() + sysconfig.get_config_var("EXT_SUFFIX"))


def load(path: Path):
    """The compiled module at path, or None (missing, or not loadable here)."""
    if not path.is_file():
        return None
    try:
        spec = importlib.util.spec_from_file_location(path.name.split(".")[0], path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    except (ImportError, OSError):
        return None
    return mod if all(callable(getattr(mod, f, None)) for f in ENTRY_POINTS) else None


def missing_tools() -> str | None:
    """Why a module cannot be built here (no Python.h, no C and C++ compiler), or None.
    The compilers are looked up on PATH first (microseconds): a machine without
    them (the usual Pi) then never imports setuptools for pycc's own check."""
    header = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not header.is_file():
        return f"no Python headers ({header}; e.g. apt-get install python3-dev)"
    for var, default in (("CC", "cc"), ("CXX", "c++")):
        exe = (os.environ.get(var) or sysconfig.get_config_var(var) or default).split()[0]
        if not shutil.which(exe):
            return f"no {'C' if var == 'CC' else 'C++'} compiler ({exe}; e.g. apt-get install gcc g++)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")            # pycc's pending-deprecation notice
        from numba.pycc.platform import external_compiler_works
    if not external_compiler_works():          # it compiles a .c and a .cxx file
        return "the C or C++ compiler does not work (numba.pycc's check)"
    return None


def build(path: Path) -> Path:
    """Compile ENTRY_POINTS into the extension module `path` (atomically
    replaced: concurrent builders each write their own file and rename);
    then remove the modules built from other kernel sources beside it."""
    why = missing_tools()
    if why:
        raise RuntimeError(f"cannot build seprt's compiled engine: {why}")
    import numba.pycc.compiler as pyc
    from numba.core.codegen import AOTCPUCodegen
    from numba.pycc import CC
    from .. import engine
    triple, cpu, features = target()
    cc = CC(path.name.split(".")[0])
    cc.verbose = False
    cc.target_cpu = cpu
    for name in ENTRY_POINTS:
        cc.export(name, SIGNATURES[name])(getattr(engine, name).py_func)
    path.parent.mkdir(parents=True, exist_ok=True)
    # pycc leaves two settings the JIT has: the CPU's features (AOT codegen
    # gives LLVM only the CPU name) and releasing the GIL (the team's workers
    # run concurrently with the caller). Both are set for this build only.
    flags_cls, feats = pyc.Flags, AOTCPUCodegen._customize_tm_features

    class _NoGil(flags_cls):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.release_gil = True

    with warnings.catch_warnings(), tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        warnings.simplefilter("ignore")            # pycc's pending-deprecation notice
        cc.output_dir = tmp
        pyc.Flags, AOTCPUCodegen._customize_tm_features = _NoGil, lambda self: features
        try:
            cc.compile()
        finally:
            pyc.Flags, AOTCPUCodegen._customize_tm_features = flags_cls, feats
        built = [p for p in Path(tmp).iterdir() if p.name.startswith(path.name.split(".")[0])]
        if len(built) != 1:
            raise RuntimeError(f"numba.pycc wrote {[p.name for p in built]} in {tmp}")
        os.replace(built[0], path)
    for old in path.parent.glob("seprt_engine_*"):     # modules of other kernel sources: never loaded again
        if not old.name.startswith(f"seprt_engine_{SOURCE_HASH[:8]}_"):
            old.unlink(missing_ok=True)
    return path


_lock = threading.Lock()
_loaded: dict[str, SimpleNamespace] = {}


def engine_functions() -> SimpleNamespace:
    """The engine's entry points for this process's settings: the compiled
    module (path "aot", built here on first use) or numba's dispatchers
    (path "jit"; also the fallback when a module cannot be built, unless
    SEPRT_AOT=1). `why` says why not "aot"."""
    m = mode()
    from .. import engine
    jit = SimpleNamespace(path="jit", module=None, **{f: getattr(engine, f) for f in ENTRY_POINTS})
    if m == "0":
        jit.why = "SEPRT_AOT=0"
        return jit
    path = module_path()
    key = f"{path} {m}"
    with _lock:
        if key in _loaded:
            return _loaded[key]
        mod, why = load(path), None
        failed = path.with_name(path.name + ".failed")    # a build that failed here once is not retried
        if mod is None and failed.is_file() and m != "1":
            why = f"an earlier build failed ({failed}: {failed.read_text(errors='replace')[:300]}); delete it to retry"
        elif mod is None:
            why = missing_tools()
            if why is None:
                try:
                    mod = load(build(path))
                    why = None if mod is not None else f"{path} was built but does not load (a noexec file system?)"
                except Exception as e:          # a read-only cache, a pycc change, a link error: JIT instead
                    why = f"{type(e).__name__}: {e}"
                if mod is None:
                    try:
                        failed.write_text(why)
                    except OSError:
                        pass
        if mod is None:
            if m == "1":
                raise RuntimeError(f"SEPRT_AOT=1 but the compiled engine is unavailable: {why}")
            jit.why = why
            fns = jit
        else:
            fns = SimpleNamespace(path="aot", module=str(path), why=None, **{f: getattr(mod, f) for f in ENTRY_POINTS})
        _loaded[key] = fns
        return fns
