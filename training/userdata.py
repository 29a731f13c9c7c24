"""The user's labelled images: an ImageFolder-layout folder or .tar(.gz).

    ds = load("photos/", preprocess)          # decoded to preprocess["size"], uint8
    train_ds, val_ds = split(ds, "fraction", val_fraction=0.1, seed=0)

Layout: ``<class>/<image>`` at any depth; the class is the image's parent
folder (as `seprt eval` reads it). Images of any size and mode are read
with `seprt.image.load_rgb` (EXIF rotation, grayscale / RGBA / palette / CMYK
-> RGB) and resized with `seprt.image.resize` — the runtime's own functions,
so a converted model sees the pixels training saw; normalization
((x/255 - mean) / std) is the same formula in `training.data.normalize`.

Bad input:

* fewer than 2 classes, or a class folder without images: refused
  (ValueError naming it) — a classifier cannot be trained or validated on it;
* an image that does not decode (corrupt, truncated, not an image):
  **skipped and counted** — one broken photo should not stop a run over
  thousands; the count and names are printed and kept in the checkpoint's
  train_config. If skipping leaves a class empty, that class is refused.

Splits: ``fraction`` (default): per class, a seeded shuffle of the files
(sorted by path) puts round(val_fraction * n) of them (at least 1 when the
class has 2 or more) into validation. ``cifar``: the shared CIFAR archive's
rule (numeric file stems >= 4500 are validation). A separate validation
folder (``--val``) uses everything in DATA for training.
"""
from __future__ import annotations

import hashlib
import json
import os
import tarfile

import numpy as np

from seprt import image as seprt_image
from seprt.folders import IMAGE_EXTS

from .data import Dataset, is_val_file

SPLIT_RULES = ("fraction", "cifar")


def _members(path: str) -> tuple[list[tuple[str, str]], list[str]]:
    """([(class, member)], [empty leaf folders]) of a folder or tar, sorted."""
    items, dirs_with_files, dirs = [], set(), set()
    if os.path.isdir(path):
        for root, ds, fs in os.walk(path):
            rel_root = os.path.relpath(root, path).replace(os.sep, "/")
            if rel_root != "." and not ds:
                dirs.add(rel_root)
            for f in fs:
                if f.startswith("."):
                    continue
                rel = f if rel_root == "." else f"{rel_root}/{f}"
                if f.lower().endswith(IMAGE_EXTS):
                    dirs_with_files.add(rel_root)
                    items.append(rel)
    elif os.path.isfile(path) and tarfile.is_tarfile(path):
        with tarfile.open(path) as tf:
            for m in tf.getmembers():
                name = m.name.strip("/")
                if m.isdir():
                    dirs.add(name)
                elif m.isfile() and name.lower().endswith(IMAGE_EXTS) and not name.rsplit("/", 1)[-1].startswith("."):
                    items.append(name)
                    dirs_with_files.add(name.rpartition("/")[0] or ".")
        # a directory listed in the tar is a leaf when no other directory lies under it
        dirs = {d for d in dirs if not any(o.startswith(d + "/") for o in dirs)}
    else:
        raise ValueError(f"{path}: not a folder or a .tar/.tar.gz archive (expected <class>/<image> files)")
    loose = [i for i in items if "/" not in i]
    if loose:
        raise ValueError(f"{path}: {len(loose)} image(s) directly in the top folder (e.g. {loose[0]}); "
                         f"put every image in a folder named after its class: <class>/<image>")
    empty = sorted(d for d in dirs if d not in dirs_with_files)
    items.sort()
    return [(m.rsplit("/", 2)[-2], m) for m in items], empty


def _read(path: str):
    """(member, bytes) for every image file, in sorted order."""
    members = [m for _, m in _members(path)[0]]
    if os.path.isdir(path):
        for m in members:
            with open(os.path.join(path, m), "rb") as f:
                yield m, f.read()
    else:
        with tarfile.open(path) as tf:
            want = set(members)
            got = {}
            for m in tf.getmembers():
                name = m.name.strip("/")
                if name in want:
                    got[name] = tf.extractfile(m).read()
            for m in members:
                yield m, got[m]


def _meta(preprocess: dict) -> dict:
    meta = {"preprocess.size": [int(v) for v in preprocess["size"]], "preprocess.resize": preprocess["resize"]}
    if "crop_fraction" in preprocess:
        meta["preprocess.crop_fraction"] = float(preprocess["crop_fraction"])
    return meta


def _cache_key(path: str, meta: dict) -> str:
    h = hashlib.sha1(json.dumps(meta, sort_keys=True).encode())
    if os.path.isdir(path):
        for root, ds, fs in os.walk(path):
            ds.sort()
            for f in sorted(fs):
                s = os.stat(os.path.join(root, f))
                h.update(f"{os.path.relpath(os.path.join(root, f), path)}:{s.st_size}:{s.st_mtime_ns};".encode())
    else:
        s = os.stat(path)
        h.update(f"{os.path.abspath(path)}:{s.st_size}:{s.st_mtime_ns}".encode())
    return os.path.basename(os.path.normpath(path)).replace(".", "_") + "-" + h.hexdigest()[:16]


def load(path: str, preprocess: dict, labels: list[str] | None = None, cache_dir: str | None = None,
         progress: bool = True, log=print) -> Dataset:
    """Decode every image of `path` to preprocess["size"] (uint8 RGB).

    labels: the class order to use (a model's labels); None = sorted class
    names. ValueError for the refusals listed in the module doc.
    """
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such folder or archive")
    meta = _meta(preprocess)
    items, empty = _members(path)
    if empty:
        raise ValueError(f"{path}: class folder(s) with no images: {', '.join(empty[:5])}; "
                         f"add images or remove the folder")
    found = sorted({c for c, _ in items})
    if len(found) < 2:
        raise ValueError(f"{path}: {len(found)} class folder(s) with images ({', '.join(found) or 'none'}); "
                         f"a classifier needs at least 2 classes laid out as <class>/<image>")
    if labels is not None:
        unknown = sorted(set(found) - set(labels))
        if unknown:
            raise ValueError(f"{path}: classes {unknown[:5]} are not among the model's labels {list(labels)[:10]}")
    classes = list(labels) if labels is not None else found
    cache = None
    if cache_dir:
        cache = os.path.join(cache_dir, _cache_key(path, meta))
        if os.path.exists(cache + ".json") and os.path.exists(cache + ".npy"):
            with open(cache + ".json") as f:
                info = json.load(f)
            lab = np.array([classes.index(c) for c in info["classes_of_files"]], dtype=np.int64)
            return Dataset(np.load(cache + ".npy"), lab, info["files"], classes, path,
                           len(info["skipped"]), info["skipped"])
    from tqdm import tqdm
    imgs, files, cls_of, skipped = [], [], [], []
    for member, data in tqdm(_read(path), total=len(items), desc=f"decoding {os.path.basename(path)}",
                             disable=not progress, unit="img", mininterval=2, leave=False):
        try:
            arr = seprt_image.resize(seprt_image.load_rgb(data), meta)
        except (seprt_image.ImageError, ValueError, OSError) as e:
            skipped.append(f"{member} ({e})")
            continue
        imgs.append(arr)
        files.append(member)
        cls_of.append(member.rsplit("/", 2)[-2])
    if skipped:
        log(f"warning: skipped {len(skipped)} of {len(items)} image(s) in {path} that do not decode: "
            + "; ".join(skipped[:3]) + (" ..." if len(skipped) > 3 else ""))
    left = set(cls_of)
    lost = [c for c in found if c not in left]
    if lost:
        raise ValueError(f"{path}: class(es) {', '.join(lost)} have no decodable image left after skipping "
                         f"{len(skipped)} unreadable file(s)")
    images = np.stack(imgs)
    if cache:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f".tmp-{os.getpid()}"
        np.save(cache + tmp + ".npy", images)
        with open(cache + tmp + ".json", "w") as f:
            json.dump({"source": os.path.abspath(path), "files": files, "classes_of_files": cls_of,
                       "skipped": skipped}, f)
        os.replace(cache + tmp + ".npy", cache + ".npy")
        os.replace(cache + tmp + ".json", cache + ".json")
    lab = np.array([classes.index(c) for c in cls_of], dtype=np.int64)
    return Dataset(images, lab, files, classes, path, len(skipped), skipped)


def subset(ds: Dataset, idx) -> Dataset:
    idx = np.asarray(idx, dtype=np.int64)
    return Dataset(ds.images[idx], ds.labels[idx], [ds.files[i] for i in idx], ds.classes, ds.source,
                   ds.skipped, ds.skipped_files)


def split(ds: Dataset, rule: str = "fraction", val_fraction: float = 0.1, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(train, validation) by `rule` (module doc). Each class keeps at least one
    training image."""
    if rule == "cifar":
        is_val = np.array([is_val_file(f) for f in ds.files], dtype=bool)
    elif rule == "fraction":
        if not 0 < val_fraction < 1:
            raise ValueError(f"--val-fraction {val_fraction} must be in (0, 1)")
        is_val = np.zeros(len(ds), dtype=bool)
        for c in range(len(ds.classes)):
            idx = np.nonzero(ds.labels == c)[0]            # files sorted by path
            if len(idx) < 2:
                continue
            rng = np.random.default_rng([seed, c])
            k = min(len(idx) - 1, max(1, round(val_fraction * len(idx))))
            is_val[rng.permutation(idx)[:k]] = True
    else:
        raise ValueError(f"unknown split rule {rule!r}; use one of {', '.join(SPLIT_RULES)}")
    tr, va = np.nonzero(~is_val)[0], np.nonzero(is_val)[0]
    present = set(ds.labels[tr].tolist())
    missing = [ds.classes[c] for c in set(ds.labels.tolist()) if c not in present]
    if missing:
        raise ValueError(f"split {rule!r} leaves class(es) {', '.join(missing)} without training images")
    if len(va) == 0:
        raise ValueError(f"split {rule!r} leaves no validation images; give --val DATA or more images")
    return subset(ds, tr), subset(ds, va)
