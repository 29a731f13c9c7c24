"""SPEC: how a command line names a user's PyTorch model.

    package.module:callable        e.g. training.models:resnet20, torchvision.models:resnet18
    path/to/file.py:callable       e.g. mynet.py:SmallCNN (relative to the current folder)

`callable` is a class or function returning an `nn.Module` (called with the
checkpoint's ``model_kwargs``), or an `nn.Module` instance (deep-copied).
A file SPEC's folder is put on sys.path, so the file can import its siblings.

    >>> m = build("training.models:resnet20")
    >>> type(m).__name__
    'ResNetCifar'
"""
from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys

import torch.nn as nn


class SpecError(ValueError):
    """A SPEC that does not name an importable model."""


def _import_target(spec: str):
    if ":" not in spec:
        raise SpecError(f"--model {spec!r}: expected package.module:callable or path/file.py:callable")
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise SpecError(f"--model {spec!r}: expected package.module:callable or path/file.py:callable")
    if where.endswith(".py") or os.sep in where or "/" in where:
        path = os.path.abspath(where)
        if not os.path.isfile(path):
            raise SpecError(f"--model {spec!r}: no such file {path}")
        name = "seprt_user_" + hashlib.sha1(path.encode()).hexdigest()[:12]
        if name in sys.modules:
            mod = sys.modules[name]
        else:
            d = os.path.dirname(path)
            if d not in sys.path:
                sys.path.insert(0, d)
            s = importlib.util.spec_from_file_location(name, path)
            mod = importlib.util.module_from_spec(s)
            sys.modules[name] = mod
            try:
                s.loader.exec_module(mod)
            except Exception as e:
                del sys.modules[name]
                raise SpecError(f"--model {spec!r}: importing {path} failed ({type(e).__name__}: {e})") from e
    else:
        try:
            mod = importlib.import_module(where)
        except Exception as e:
            raise SpecError(f"--model {spec!r}: cannot import module {where!r} ({type(e).__name__}: {e}); "
                            f"run from the folder that holds it, set PYTHONPATH, or give path/file.py:{attr}") from e
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(mod) if not n.startswith("_")]
            raise SpecError(f"--model {spec!r}: {where} has no attribute {attr!r} (it has: {', '.join(names[:15])})")
        obj = getattr(obj, part)
    return obj


def accepts(spec: str, kwarg: str) -> bool:
    """Whether the SPEC's callable takes a keyword `kwarg` (e.g. num_classes)."""
    obj = _import_target(spec)
    if isinstance(obj, nn.Module) or not callable(obj):
        return False
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return False
    return kwarg in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def build(spec: str, kwargs: dict | None = None) -> nn.Module:
    """A fresh module from `spec` (SpecError saying what is wrong otherwise)."""
    obj = _import_target(spec)
    if isinstance(obj, nn.Module):
        if kwargs:
            raise SpecError(f"--model {spec!r} is a module instance; it takes no --model-kwargs")
        return copy.deepcopy(obj)
    if not callable(obj):
        raise SpecError(f"--model {spec!r}: {type(obj).__name__} is not callable and not an nn.Module")
    try:
        m = obj(**(kwargs or {}))
    except Exception as e:
        raise SpecError(f"--model {spec!r}: calling it with {kwargs or {}} failed ({type(e).__name__}: {e})") from e
    if not isinstance(m, nn.Module):
        raise SpecError(f"--model {spec!r} returned a {type(m).__name__}, not a torch.nn.Module")
    return m
