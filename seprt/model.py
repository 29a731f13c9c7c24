"""`seprt.Model`: load a model file, validate it, run it on images."""
from __future__ import annotations

import os

import numpy as np

from . import format as fmt
from . import image, reference
from .engine import FastEngine
from .errors import FormatError
from .graph import Graph
from .kernels.intrinsics import dot_isa
from .ops import get_wfmt

ENGINES = ("fast", "reference")


class Model:
    """A loaded seprt model.

    Args:
        path: a .bin model file (memory-mapped).
        engine: "fast" (numba kernels, seprt/engine.py) or "reference" (plain
            numpy, the definition of every op).
        threads: compute threads (>= 1) of this model's fast engine: one image is
            split across them layer by layer (results bit-identical to 1 thread);
            a batch of at least `threads` images is split by image. Each Model
            keeps its own count and its own worker threads.
    Models whose activations need more than seprt.graph.MAX_ACTIVATION_BYTES
    (1 GiB) are refused at load; raise that limit to load one you trust.
    Raises:
        FormatError: the file is not a valid seprt model.

    Example:
        >>> m = Model(demo_model_path())
        >>> label, prob = m.predict(demo_images()[0], top_k=1)[0]
        >>> label in m.labels and 0.0 <= prob <= 1.0
        True
    """

    def __init__(self, path: str | os.PathLike, engine: str = "fast", threads: int = 1):
        self._init(fmt.load(path), engine, threads, os.path.getsize(path), str(path))

    @classmethod
    def from_bytes(cls, buf, engine: str = "fast", threads: int = 1) -> "Model":
        """Load from a bytes-like object held in memory (viewed, not copied)."""
        m = cls.__new__(cls)
        m._init(fmt.from_bytes(buf), engine, threads, len(memoryview(buf).cast("B")), "<bytes>")
        return m

    def _init(self, graph: Graph, engine: str, threads: int, nbytes: int, source: str) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
        self.graph, self.engine, self.threads = graph, engine, threads
        self._fast = FastEngine(graph, threads) if engine == "fast" else None
        self.nbytes, self.source = nbytes, source
        self.meta = graph.meta
        self.labels: list[str] = list(graph.meta["labels"])
        self.input_shape: tuple[int, int, int] = graph.values[graph.input].shape

    def __repr__(self) -> str:
        return (f"Model({self.source!r}, arch={self.meta['arch']!r}, variant={self.meta['variant']!r}, "
                f"engine={self.engine!r})")

    # ------------------------------------------------------------- tensors
    def check_input(self, x) -> np.ndarray:
        """Validate a preprocessed batch (N, H, W, 3) float32, C-contiguous."""
        want = self.input_shape
        if not isinstance(x, np.ndarray):
            raise ValueError(f"logits() takes a numpy array (N, {want[0]}, {want[1]}, 3) float32, "
                             f"got {type(x).__name__}; use Model.preprocess(img) to make one")
        if x.dtype != np.float32:
            raise ValueError(f"logits() input must be float32, got {x.dtype}")
        if x.ndim != 4 or x.shape[1:] != want:
            raise ValueError(f"logits() input must have shape (N, {want[0]}, {want[1]}, 3), got {x.shape}")
        if x.shape[0] == 0:
            raise ValueError("logits() got an empty batch (N = 0)")
        if not x.flags.c_contiguous:
            raise ValueError("logits() input must be C-contiguous; pass np.ascontiguousarray(x)")
        if not np.all(np.isfinite(x)):
            raise ValueError("logits() input contains NaN or Inf")
        return x

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A checked batch -> (logits (N, K), embed (N, D)); FormatError if the
        model's arithmetic overflows (a tampered file can be valid yet overflow)."""
        x = self.check_input(x)
        g = self.graph
        if self._fast is None:
            env = reference.run(g, x, (g.output, g.embed))
            logits, embed = env[g.output], env[g.embed]
        else:
            logits, embed = self._fast.run(x)
        if not np.all(np.isfinite(logits)):
            raise FormatError(f"{self.source}: the model's arithmetic overflowed (non-finite logits) on this "
                              "input; its weights are corrupt or out of range; re-export the model")
        return logits, embed

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) float32 preprocessed batch -> (N, classes) float32 logits."""
        return self._run(x)[0]

    def preprocess(self, img) -> np.ndarray:
        """Image -> (1, H, W, 3) float32, exactly what logits() takes."""
        return image.preprocess(img, self.meta)[None]

    def embed(self, img) -> np.ndarray:
        """Image -> (D,) float32 pooled features (the classifier's input)."""
        return self._run(self.preprocess(img))[1][0]

    # ------------------------------------------------------------- images
    def predict(self, img, top_k: int = 5) -> list[tuple[str, float]]:
        """Image -> [(label, probability), ...], best first, top_k entries.

        img: a path, encoded bytes, a PIL.Image, or an (H, W, 3) uint8 RGB array.
        """
        return self.predict_batch([img], top_k)[0]

    def predict_batch(self, imgs, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """Several images in one batch -> one top-k list per image."""
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
        imgs = list(imgs)
        if not imgs:
            return []
        x = np.stack([image.preprocess(im, self.meta) for im in imgs])
        probs = reference.softmax(self.logits(x).astype(np.float64))
        k = min(top_k, probs.shape[1])
        out = []
        for p in probs:
            idx = np.argsort(-p, kind="stable")[:k]
            out.append([(self.labels[i], float(p[i])) for i in idx])
        return out

    # ------------------------------------------------------------- info
    def info(self) -> dict:
        """Layers, parameters, bytes per section kind, preprocessing, provenance.

        Per layer: name, op, shape, params (float weight count); weighted
        layers add kernel, stride, groups, weights (format name), integer,
        bytes (all its tensors) and weight_bytes (all but the per-output-channel
        scale/alpha and bias)."""
        g = self.graph
        layers, sections = [], {"patterns": 0, "int8 weights": 0, "float weights": 0, "scales": 0, "biases": 0}
        kind = {"bin": "patterns", "i8": "int8 weights", "f32": "float weights"}
        for n in g.nodes:
            row = {"name": n.name, "op": n.op, "shape": list(g.values[n.output].shape), "params": g.node_params(n)}
            if n.wfmt:
                wf = get_wfmt(n.wfmt)
                per_channel = sum(n.tensor(t).nbytes for t in ("bias", wf.scale_name) if n.tensor(t) is not None)
                total = sum(a.nbytes for a in n.tensors)
                row.update(kernel=n.kernel, stride=n.stride, groups=n.groups, weights=n.wfmt,
                           integer=g.is_integer(n), bytes=int(total), weight_bytes=int(total - per_channel))
                key = kind.get(n.wfmt, f"{n.wfmt} weights")
                sections[key] = sections.get(key, 0) + total - per_channel
                sections["biases"] += n.bias.nbytes
                sections["scales"] += per_channel - n.bias.nbytes
            layers.append(row)
        sections["graph, metadata, padding"] = self.nbytes - sum(sections.values())
        act_bits = sorted({v.q_bits for v in g.values if v.q_bits})
        return {
            "arch": self.meta["arch"],
            "variant": self.meta["variant"],
            "engine": self.engine,
            "kernels": sorted(set(self._fast.plan.paths)) if self._fast else ["reference (numpy)"],
            "dot_isa": dot_isa(),            # the dot tiles' path on this CPU: vnni | udot | generic
            "params": g.params(),
            "macs": g.macs(),
            "bytes": self.nbytes,
            "sections": sections,
            "activation_bits": act_bits,
            "labels": self.labels,
            "preprocess": {
                "size": list(self.meta["preprocess.size"]),
                "resize": self.meta["preprocess.resize"],
                "crop_fraction": self.meta.get("preprocess.crop_fraction", 0.875),
                "mean": list(self.meta["preprocess.mean"]),
                "std": list(self.meta["preprocess.std"]),
                "channel_order": self.meta.get("preprocess.channel_order", "RGB"),
                "scale": "x / 255, then (x - mean) / std",
            },
            "provenance": {k.split(".", 1)[1]: v for k, v in self.meta.items() if k.startswith("provenance.")},
            "layers": layers,
        }


def demo_model_path() -> str:
    """Path of the model shipped as package data (used by `seprt demo`)."""
    return os.path.join(os.path.dirname(__file__), "data", "demo.bin")


def demo_images() -> list[str]:
    """Paths of the sample images shipped as package data."""
    d = os.path.join(os.path.dirname(__file__), "data", "samples")
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.lower().endswith((".jpg", ".png")))
