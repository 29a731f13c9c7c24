"""`seprt.Model`: load a model file, validate it, run it on images."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import format as fmt
from . import image, reference
from .engine import FastEngine
from .graph import Graph
from .kernels.intrinsics import dot_isa

ENGINES = ("fast", "reference")


class Model:
    """A loaded seprt model.

    Args:
        path: a .bin model file (memory-mapped).
        engine: "fast" (numba kernels, seprt/engine.py) or "reference" (plain
            numpy, the definition of every op).
        threads: compute threads (>= 1) for the fast engine: a batch is split
            across this many threads (one image runs on one thread).
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
        self._fast = FastEngine(graph) if engine == "fast" else None
        self._pool = None                        # worker threads for threads > 1
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

    def run(self, x: np.ndarray, outputs: tuple[int, ...]) -> dict[int, np.ndarray]:
        """Run the graph on a checked batch; returns the requested values
        (the fast engine gives logits and embed)."""
        x = self.check_input(x)
        if self._fast is None:
            return reference.run(self.graph, x, outputs)
        if self.threads == 1 or len(x) == 1:
            logits, embed = self._fast.run(x)
        else:                                    # split the batch; numba releases the GIL
            parts = np.array_split(np.arange(len(x)), min(self.threads, len(x)))
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="seprt")
            futures = [self._pool.submit(self._fast.run, np.ascontiguousarray(x[p])) for p in parts[1:]]
            results = [self._fast.run(np.ascontiguousarray(x[parts[0]]))] + [f.result() for f in futures]
            logits = np.concatenate([r[0] for r in results])
            embed = np.concatenate([r[1] for r in results])
        return {self.graph.output: logits, self.graph.embed: embed}

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) float32 preprocessed batch -> (N, classes) float32 logits."""
        return self.run(x, (self.graph.output,))[self.graph.output]

    def preprocess(self, img) -> np.ndarray:
        """Image -> (1, H, W, 3) float32, exactly what logits() takes."""
        return image.preprocess(img, self.meta)[None]

    def embed(self, img) -> np.ndarray:
        """Image -> (D,) float32 pooled features (the classifier's input)."""
        return self.run(self.preprocess(img), (self.graph.embed,))[self.graph.embed][0]

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
        """Layers, parameters, bytes per section kind, preprocessing, provenance."""
        g = self.graph
        layers, sections = [], {"patterns": 0, "int8 weights": 0, "float weights": 0, "scales": 0, "biases": 0}
        for n in g.nodes:
            row = {"name": n.name, "op": n.op, "shape": list(g.values[n.output].shape), "params": g.node_params(n)}
            if n.op in ("conv", "fc"):
                row.update(kernel=n.kernel, stride=n.stride, groups=n.groups, weights=n.wfmt,
                           integer=g.is_integer(n),
                           bytes=int(n.weight.nbytes + n.bias.nbytes + (n.scale.nbytes if n.scale is not None else 0)))
                key = {"bin": "patterns", "i8": "int8 weights", "f32": "float weights"}[n.wfmt]
                sections[key] += n.weight.nbytes
                sections["biases"] += n.bias.nbytes
                if n.scale is not None:
                    sections["scales"] += n.scale.nbytes
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
