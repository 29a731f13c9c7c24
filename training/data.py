"""Training data: the CIFAR-10 JPEG archive or an ImageFolder-style directory.

Sources:

* a ``.tar``/``.tar.gz`` archive with members ``[prefix/]<class>/<file>`` (the
  shared CIFAR-10 copy has ``train/<class>/<NNNN>.jpg``);
* a directory ``<class>/<image>`` (ImageFolder style).

Images are decoded once with Pillow (converted to RGB, stretched to the
architecture's input size if they are not already that size) and cached as
uint8 ``.npy`` arrays under ``<repo>/.cache/seprt-data/`` keyed by the
source's size and mtime. A file that does not decode is skipped with a
warning and counted (`Dataset.skipped`).

Split: a file whose stem is a number goes to train if the number is < 4500,
otherwise to validation (the shared README's rule: 0000-4499 train,
4500-4999 validation). Files with non-numeric stems are split by a stable
hash of their path (90 % train / 10 % validation).

Augmentation (pad-4 random crop + horizontal flip) runs on whole uint8
batches with one gather, so the data path costs little next to the model.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import warnings
import zlib
from dataclasses import dataclass, field

import numpy as np
import torch

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".gif")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CACHE = os.path.join(REPO_ROOT, ".cache", "seprt-data")
DEFAULT_DATA = "/work/shared/datasets/cifar10-train.tar.gz"
VAL_FROM = 4500


@dataclass
class Dataset:
    """Decoded images (N, H, W, 3) uint8, labels (N,) int64, member paths."""
    images: np.ndarray
    labels: np.ndarray
    files: list[str]
    classes: list[str]
    source: str
    skipped: int = 0
    skipped_files: list[str] = field(default_factory=list)

    def split(self, which: str) -> "Dataset":
        """The "train", "val" or "all" part (see the module docstring)."""
        if which == "all":
            return self
        is_val = np.array([is_val_file(f) for f in self.files], dtype=bool)
        keep = ~is_val if which == "train" else is_val
        if which not in ("train", "val"):
            raise ValueError(f"unknown split {which!r}; use train, val or all")
        idx = np.nonzero(keep)[0]
        return Dataset(self.images[idx], self.labels[idx], [self.files[i] for i in idx],
                       self.classes, self.source, self.skipped, self.skipped_files)

    def __len__(self) -> int:
        return len(self.labels)


def is_val_file(path: str) -> bool:
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem.isdigit():
        return int(stem) >= VAL_FROM
    return zlib.crc32(path.encode()) % 10 == 0


CALIB_PER_CLASS = 26   # files 0000-0025 of each class: 260 training images for int8 calibration


def is_calib_file(path: str) -> bool:
    """Calibration images: the first files of each class's training split."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem.isdigit() and int(stem) < CALIB_PER_CLASS


def _class_and_name(member: str) -> tuple[str, str] | None:
    parts = member.strip("/").split("/")
    if len(parts) < 2 or not parts[-1].lower().endswith(IMAGE_EXTS) or parts[-1].startswith("."):
        return None
    return parts[-2], parts[-1]


def _decode(data: bytes, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image
    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        if im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8)


def _iter_source(path: str):
    """(member path, bytes) for every image file of a tar or a directory."""
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for f in sorted(files):
                full = os.path.join(root, f)
                rel = os.path.relpath(full, path).replace(os.sep, "/")
                if _class_and_name(rel):
                    with open(full, "rb") as fh:
                        yield rel, fh.read()
    else:
        with tarfile.open(path, "r:*") as tf:
            for m in tf:
                if m.isfile() and _class_and_name(m.name):
                    yield m.name, tf.extractfile(m).read()


def _order_classes(found: set[str], labels: list[str] | None) -> list[str]:
    if labels and set(found) <= set(labels):
        return list(labels)
    if labels and len(found) != len(labels):
        raise ValueError(f"dataset classes {sorted(found)} do not match the model's labels {labels}")
    return sorted(found)


def _cache_key(path: str, size: tuple[int, int]) -> str:
    st = os.stat(path)
    if os.path.isdir(path):  # directory: size+mtime of every file
        h = hashlib.sha1()
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for f in sorted(files):
                s = os.stat(os.path.join(root, f))
                h.update(f"{os.path.relpath(os.path.join(root, f), path)}:{s.st_size}:{s.st_mtime_ns};".encode())
        sig = h.hexdigest()[:16]
    else:
        sig = f"{st.st_size}-{st.st_mtime_ns}"
    base = os.path.basename(os.path.normpath(path)).replace(".", "_")
    return f"{base}-{sig}-{size[0]}x{size[1]}"


def load(path: str = DEFAULT_DATA, size: tuple[int, int] = (32, 32), labels: list[str] | None = None,
         cache_dir: str | None = DEFAULT_CACHE, progress: bool = True) -> Dataset:
    """Decode (or read from cache) every image of a tar archive or directory."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"dataset {path} does not exist")
    key = _cache_key(path, size)
    if cache_dir:
        meta_p = os.path.join(cache_dir, key + ".json")
        img_p, lab_p = os.path.join(cache_dir, key + "-images.npy"), os.path.join(cache_dir, key + "-labels.npy")
        if all(os.path.exists(p) for p in (meta_p, img_p, lab_p)):
            with open(meta_p) as f:
                meta = json.load(f)
            classes = _order_classes(set(meta["classes"]), labels)
            lab = np.load(lab_p)
            # remap if the cached class order differs from the requested one
            remap = np.array([classes.index(c) for c in meta["classes"]], dtype=np.int64)
            return Dataset(np.load(img_p, mmap_mode=None), remap[lab], meta["files"], classes, path,
                           meta["skipped"], meta["skipped_files"])
    from tqdm import tqdm
    imgs, labs_s, files, skipped = [], [], [], []
    for member, data in tqdm(_iter_source(path), desc=f"decoding {os.path.basename(path)}",
                             disable=not progress, unit="img", mininterval=2):
        cls, _ = _class_and_name(member)
        try:
            arr = _decode(data, size)
        except Exception as e:  # corrupt or unreadable image: skip and count
            warnings.warn(f"skipping {member}: cannot decode ({type(e).__name__}: {e})")
            skipped.append(member)
            continue
        imgs.append(arr)
        labs_s.append(cls)
        files.append(member)
    if not imgs:
        raise ValueError(f"dataset {path}: no decodable images found (expected <class>/<image> files)")
    if skipped:
        warnings.warn(f"{path}: skipped {len(skipped)} undecodable image(s)")
    found = sorted(set(labs_s))
    classes = _order_classes(set(found), labels)
    cidx = {c: i for i, c in enumerate(found)}
    images = np.stack(imgs)
    lab_found = np.array([cidx[c] for c in labs_s], dtype=np.int64)
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f".tmp-{os.getpid()}"
        np.save(img_p + tmp + ".npy", images)
        np.save(lab_p + tmp + ".npy", lab_found)
        with open(meta_p + tmp, "w") as f:
            json.dump({"source": os.path.abspath(path), "classes": found, "files": files,
                       "skipped": len(skipped), "skipped_files": skipped}, f)
        os.replace(img_p + tmp + ".npy", img_p)
        os.replace(lab_p + tmp + ".npy", lab_p)
        os.replace(meta_p + tmp, meta_p)
    remap = np.array([classes.index(c) for c in found], dtype=np.int64)
    return Dataset(images, remap[lab_found], files, classes, path, len(skipped), skipped)


def mean_std(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std on the 0..1 scale of (N, H, W, 3) uint8."""
    x = torch.from_numpy(images).reshape(-1, 3).double() / 255.0
    return x.mean(0).tolist(), x.std(0).tolist()


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 numpy -> (N, 3, H, W) uint8 torch (a view, no copy)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)


def normalize(x_u8: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 NCHW -> float NCHW, (x/255 - mean)/std, channels_last memory."""
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    x = (x_u8.float() - m) / s
    return x.contiguous(memory_format=torch.channels_last)


def augment(x_u8: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Pad-`pad` (zeros) random crop + random horizontal flip of a uint8 NCHW
    batch, as one gather. Returns a new uint8 NCHW tensor."""
    n, c, h, w = x_u8.shape
    xp = torch.nn.functional.pad(x_u8, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    ar_h, ar_w = torch.arange(h), torch.arange(w)
    rows = oy[:, None] + ar_h[None, :]                                   # (n, h)
    cols = torch.where(flip[:, None], ox[:, None] + (w - 1 - ar_w)[None, :], ox[:, None] + ar_w[None, :])
    bi = torch.arange(n)[:, None, None, None]
    ci = torch.arange(c)[None, :, None, None]
    return xp[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


class Batches:
    """Iterates (x float NCHW channels_last, y int64) batches of a split.

    Training order: a permutation seeded by (seed, epoch) so a resumed run
    sees the same order; under torch.distributed each rank takes its share via
    `DistributedSampler` (same seed, set_epoch). Augmentation uses its own
    generator seeded by (seed, epoch, rank).
    """

    def __init__(self, ds: Dataset, mean, std, batch_size: int, train: bool, seed: int = 0,
                 rank: int = 0, world_size: int = 1, drop_last: bool | None = None):
        self.x = to_tensor(ds.images)
        self.y = torch.from_numpy(ds.labels)
        self.mean, self.std = mean, std
        self.bs = batch_size
        self.train = train
        self.seed = seed
        self.rank, self.world = rank, world_size
        self.drop_last = train if drop_last is None else drop_last
        self.epoch = 0
        self.sampler = None
        if world_size > 1 and train:
            from torch.utils.data import DistributedSampler
            self.sampler = DistributedSampler(range(len(self.y)), num_replicas=world_size, rank=rank,
                                              shuffle=True, seed=seed, drop_last=True)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)

    def _indices(self) -> torch.Tensor:
        if not self.train:
            return torch.arange(len(self.y))
        if self.sampler is not None:
            return torch.tensor(list(iter(self.sampler)), dtype=torch.int64)
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        return torch.randperm(len(self.y), generator=g)

    def __len__(self) -> int:
        n = len(self.y) // self.world if (self.sampler is not None) else len(self.y)
        return n // self.bs if self.drop_last else -(-n // self.bs)

    def __iter__(self):
        idx = self._indices()
        gen = torch.Generator().manual_seed(self.seed * 7919 + self.epoch * 31 + self.rank + 1)
        for b in range(len(self)):
            sel = idx[b * self.bs:(b + 1) * self.bs]
            xb = self.x[sel]
            if self.train:
                xb = augment(xb, gen)
            yield normalize(xb, self.mean, self.std), self.y[sel]


def export_val(src: str, out: str, split: str = "val") -> int:
    """Write a split as ``<class>/<file>`` to a directory or a .tar/.tar.gz,
    copying the original image bytes (no re-encoding). Returns the count.
    split: "val", "all", or "calib" (files 0000-0025 of each class, from the
    training split: the int8 calibration set the zoo uses)."""
    n = 0
    is_tar = out.endswith((".tar", ".tar.gz", ".tgz"))
    tf = tarfile.open(out, "w:gz" if out.endswith(("gz", "tgz")) else "w") if is_tar else None
    try:
        for member, data in _iter_source(src):
            if split == "val" and not is_val_file(member):
                continue
            if split == "calib" and not is_calib_file(member):
                continue
            cls, name = _class_and_name(member)
            rel = f"{cls}/{name}"
            if tf is not None:
                info = tarfile.TarInfo(rel)
                info.size = len(data)
                info.mode = 0o644
                tf.addfile(info, io.BytesIO(data))
            else:
                os.makedirs(os.path.join(out, cls), exist_ok=True)
                with open(os.path.join(out, cls, name), "wb") as f:
                    f.write(data)
            n += 1
    finally:
        if tf is not None:
            tf.close()
    return n
