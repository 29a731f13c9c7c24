"""Atomic file writes: the one helper every writer of models, TFLite files and
checkpoints uses, so an interrupted write never leaves a half file at `path`."""
from __future__ import annotations

import os
import tempfile
from typing import Callable


def atomic_write(path: str | os.PathLike, data: bytes | Callable[[str], None]) -> None:
    """Write `data` (bytes, or a function that writes a given temp path) to a
    temp file beside `path`, give it the normal file mode (0666 & ~umask), then
    rename it over `path`. The temp file is removed on any error."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        if callable(data):
            os.close(fd)
            data(tmp)
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)        # mkstemp makes 0600; a model file is not a secret
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
