"""`jit`: numba.njit(nogil=True) with an on-disk cache keyed by the kernels' source.

numba keys a cached function by its own bytecode only, so a function that
inlines kernels from other files would keep running their old machine code
after an edit or an upgrade. Every seprt kernel, and the engine that calls
them, is compiled with `jit`, whose cache key also holds a hash of all the
files that kernels are built from.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from numba import njit
from numba.core.caching import FunctionCache

from .intrinsics import dot_isa

_HERE = Path(__file__).resolve().parent
_SOURCES = sorted(_HERE.glob("*.py")) + [_HERE.parent / "engine.py", _HERE.parent / "plan.py"]
SOURCE_HASH = hashlib.sha256(b"".join(p.read_bytes() for p in _SOURCES)).hexdigest()


class _KernelCache(FunctionCache):
    def _index_key(self, sig, codegen):
        return super()._index_key(sig, codegen) + (dot_isa(), SOURCE_HASH)


def jit(fn=None, **options):
    """njit(nogil=True, **options), cached on disk under the kernels' source hash."""
    if fn is None:
        return lambda f: jit(f, **options)
    dispatcher = njit(nogil=True, **options)(fn)
    dispatcher._cache = _KernelCache(dispatcher.py_func)
    return dispatcher
