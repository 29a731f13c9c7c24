"""Labelled image folders and tar archives: <class>/<image> at any depth."""
from __future__ import annotations

import os
import tarfile

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


def is_image_source(data: str) -> bool:
    """A folder, or a file tarfile can open (.tar, .tar.gz, ...)."""
    return os.path.isdir(data) or (os.path.isfile(data) and tarfile.is_tarfile(data))


def iter_labelled(data: str):
    """Yield (class folder name, name, image source) from a folder or tar.

    Images sit in folders named after their class at any depth; the class is
    the image's parent folder. Sorted by path, so --limit is reproducible.
    """
    if os.path.isdir(data):
        items = []
        for root, _, files in os.walk(data):
            for f in files:
                if f.lower().endswith(IMAGE_EXTS):
                    p = os.path.join(root, f)
                    items.append((os.path.relpath(p, data), p))
        for rel, p in sorted(items):
            yield os.path.basename(os.path.dirname(p)), rel, p
    elif os.path.isfile(data) and tarfile.is_tarfile(data):
        with tarfile.open(data) as tf:
            members = sorted((m for m in tf.getmembers() if m.isfile() and m.name.lower().endswith(IMAGE_EXTS)
                              and "/" in m.name), key=lambda m: m.name)
            for mem in members:
                yield mem.name.rsplit("/", 2)[-2], mem.name, tf.extractfile(mem).read()
    else:
        raise ValueError(f"{data}: not a folder or a .tar/.tar.gz archive")


def count_labelled(data: str) -> int:
    if os.path.isdir(data):
        return sum(1 for _, _, fs in os.walk(data) for f in fs if f.lower().endswith(IMAGE_EXTS))
    with tarfile.open(data) as tf:
        return sum(1 for m in tf.getmembers() if m.isfile() and m.name.lower().endswith(IMAGE_EXTS) and "/" in m.name)
