"""Labelled image folders and tar archives: <class>/<image> at any depth."""
from __future__ import annotations

import os
import tarfile

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


def is_image_source(data: str) -> bool:
    """A folder, or a file tarfile can open (.tar, .tar.gz, ...)."""
    return os.path.isdir(data) or (os.path.isfile(data) and tarfile.is_tarfile(data))


def spread(n: int, limit: int | None) -> list[int]:
    """Indices of `limit` of n sorted items spread evenly over them (all n when
    limit is None, 0 or >= n): a class-sorted folder gives every class its
    share, where the first `limit` would be one or two classes."""
    if not limit or limit >= n:
        return list(range(n))
    return [i * n // limit for i in range(limit)]


def iter_labelled(data: str, limit: int | None = None):
    """Yield (class folder name, name, image source) from a folder or tar.

    Images sit in folders named after their class at any depth; the class is
    the image's parent folder. Sorted by path; with `limit`, that many images
    spread evenly over the sorted list (`spread`), the same ones every run.
    """
    if os.path.isdir(data):
        items = []
        for root, _, files in os.walk(data):
            for f in files:
                if f.lower().endswith(IMAGE_EXTS):
                    p = os.path.join(root, f)
                    items.append((os.path.relpath(p, data), p))
        items.sort()
        for i in spread(len(items), limit):
            rel, p = items[i]
            yield os.path.basename(os.path.dirname(p)), rel, p
    elif os.path.isfile(data) and tarfile.is_tarfile(data):
        with tarfile.open(data) as tf:
            members = sorted((m for m in tf.getmembers() if m.isfile() and m.name.lower().endswith(IMAGE_EXTS)
                              and "/" in m.name), key=lambda m: m.name)
            for i in spread(len(members), limit):
                mem = members[i]
                yield mem.name.rsplit("/", 2)[-2], mem.name, tf.extractfile(mem).read()
    else:
        raise ValueError(f"{data}: not a folder or a .tar/.tar.gz archive")


def count_labelled(data: str) -> int:
    if os.path.isdir(data):
        return sum(1 for _, _, fs in os.walk(data) for f in fs if f.lower().endswith(IMAGE_EXTS))
    with tarfile.open(data) as tf:
        return sum(1 for m in tf.getmembers() if m.isfile() and m.name.lower().endswith(IMAGE_EXTS) and "/" in m.name)
