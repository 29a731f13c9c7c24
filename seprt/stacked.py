"""Stacked low-dimensional binary filters, numpy side (no torch).

A k x k conv's filters (K, k, k, Cg) become S = Cg / d slices of d channels,
each slice one of m shared ±1 bank filters (k, k, d), times one alpha per
output channel (weight formats `stack` and `stack_packed`, seprt/ops/wfmt_stack.py).

    >>> import numpy as np
    >>> w = np.random.default_rng(0).standard_normal((8, 3, 3, 16)).astype(np.float32)
    >>> bank, index, alpha = cluster_slices(w, d=4, m=6)
    >>> bank.shape, index.shape, alpha.shape, int(index.max()) < 6
    ((6, 3, 3, 4), (8, 4), (8,), True)

`cluster_slices` is the initialisation the issue suggests: k-means on the sign
patterns of all d-channel slices (|w|-weighted majority vote for the centres,
the largest correlation for the assignment); training (training/stacked.py)
fine-tunes from it. `stack_layers` applies it to every k x k conv of an
architecture; `variants.build_graph` then writes `stack_packed` nodes for the layers
that carry bank/index/alpha.
"""
from __future__ import annotations

import numpy as np

from .arch import Arch, Layer
from .ops import get_op
from .ops.wfmt_stack import MAX_BANK, expand, index_of, pack_index
from .quant import pack_pattern


def layer_dm(cg: int, k_out: int, d: int, m: int) -> tuple[int, int]:
    """The (d, m) a layer with Cg inputs and K outputs gets for a net-wide
    setting (d, m): d = the largest divisor of Cg that is <= d (the stem's 3
    channels give 3 for d >= 3), m = min(m, number of slices K*Cg/d, 256)."""
    dd = max(x for x in range(1, min(d, cg) + 1) if cg % x == 0)
    return dd, max(1, min(m, k_out * (cg // dd), MAX_BANK))


def slice_vectors(w: np.ndarray, d: int) -> np.ndarray:
    """(K, k, k, Cg) -> (K, S, k*k*d): the d-channel slices of every filter,
    each flattened in bank order (ky, kx, c)."""
    k_out, kh, kw, cg = w.shape
    s = cg // d
    return np.ascontiguousarray(w.reshape(k_out, kh, kw, s, d).transpose(0, 3, 1, 2, 4)).reshape(k_out, s, -1)


def cluster_slices(w: np.ndarray, d: int, m: int, iters: int = 20, seed: int = 0):
    """k-means of the slices' sign patterns into m ±1 bank filters.

    Args:
        w: (K, k, k, Cg) float weights (OHWI, BN folded); d divides Cg.
    Returns:
        bank (m, k, k, d) int8 ±1, index (K, Cg/d) uint8, alpha (K,) float32:
        the least-squares scale of each filter's expanded ±1 weight.
    """
    k_out, kh, kw, cg = w.shape
    if cg % d or not 1 <= m <= MAX_BANK:
        raise ValueError(f"d={d} must divide Cg={cg} and m={m} be 1..{MAX_BANK}")
    v = slice_vectors(np.asarray(w, np.float32), d).reshape(k_out * (cg // d), -1)   # (N, n)
    rng = np.random.default_rng(seed)
    # start from the m heaviest distinct sign patterns (random tie-break)
    signs = np.where(v >= 0, 1.0, -1.0).astype(np.float32)
    uniq, inv = np.unique(signs, axis=0, return_inverse=True)
    mass = np.bincount(inv.reshape(-1), weights=np.abs(v).sum(1), minlength=len(uniq))
    order = np.argsort(-(mass + 1e-6 * rng.random(len(uniq))))
    c = uniq[order[:m]]
    if len(c) < m:                                            # fewer distinct patterns than m: random fill
        c = np.concatenate([c, np.where(rng.random((m - len(c), v.shape[1])) < 0.5, -1.0, 1.0)]).astype(np.float32)
    for _ in range(iters):
        a = np.argmax(v @ c.T, axis=1)                        # best correlation with a ±1 centre
        nc = np.zeros_like(c)
        np.add.at(nc, a, v)                                   # weighted majority vote
        new = np.where(nc >= 0, 1.0, -1.0).astype(np.float32)
        empty = np.bincount(a, minlength=m) == 0
        new[empty] = c[empty]
        if np.array_equal(new, c):
            break
        c = new
    a = np.argmax(v @ c.T, axis=1)
    bank = c.reshape(m, kh, kw, d).astype(np.int8)
    index = a.reshape(k_out, cg // d).astype(np.uint8)
    b = expand(pack_pattern(bank), index, (k_out, kh, kw, cg)).reshape(k_out, -1).astype(np.float32)
    alpha = np.maximum((np.asarray(w, np.float32).reshape(k_out, -1) * b).mean(axis=1), 0).astype(np.float32)
    return bank, index, alpha


def stacked_by(l: Layer) -> bool:
    """Every conv with kernel > 1 (the stem included) is stacked."""
    return get_op(l.op).weighted and l.kernel > 1          # only convs have k x k windows


def stack_layers(a: Arch, layers: dict[str, dict], d: int, m: int, iters: int = 20) -> dict[str, dict]:
    """Add bank/index/alpha (the `stack` format's arrays) to every k x k conv,
    (d, m) per layer from `layer_dm`. bank is (m, k, k, d) ±1 int8."""
    out = dict(layers)
    for l in a.layers:
        if stacked_by(l):
            w = layers[l.name]["weight"]
            dd, mm = layer_dm(w.shape[3], w.shape[0], d, m)
            bank, index, alpha = cluster_slices(w, dd, mm, iters)
            out[l.name] = {**layers[l.name], "bank": bank, "index": index, "alpha": alpha}
    return out


def stack_weights(d: dict) -> dict:
    """A layer dict with bank/index/alpha -> the `stack_packed` node's tensors
    (the index at ceil(log2 m) bits; never larger than `stack`'s byte per index)."""
    bank = np.asarray(d["bank"])
    return {"wfmt": "stack_packed", "bank": pack_pattern(bank),
            "index": pack_index(np.asarray(d["index"], np.uint8), len(bank)),
            "alpha": np.asarray(d["alpha"], np.float32), "bias": np.asarray(d["bias"], np.float32)}


def byte_index(g):
    """g with every `stack_packed` node rewritten as `stack` (a byte per index):
    the same model, for readers that predate `stack_packed`. Returns g."""
    for n in g.nodes:
        if n.wfmt == "stack_packed":
            n.tensors = (n.tensors[0], index_of(n, g.values[n.output].shape[-1])) + n.tensors[2:]
            n.wfmt = "stack"
    return g


def packed_index(g):
    """g with every `stack` node rewritten as `stack_packed`: the same model,
    its indices at ceil(log2 m) bits (files of converters before it). Returns g.

        python -c "from seprt import format as f, stacked as s; f.save(s.packed_index(f.load('OLD.bin')), 'NEW.bin')"
    """
    for n in g.nodes:
        if n.wfmt == "stack":
            n.tensors = (n.tensors[0], pack_index(n.tensors[1], len(n.tensors[0]))) + n.tensors[2:]
            n.wfmt = "stack_packed"
    return g


def kxk_bytes(g) -> dict:
    """Bytes of the k x k conv weights of a graph against float32: the
    weight tensors (bank + index, pattern, ...; alpha/scale and bias
    excluded) of every conv with kernel > 1, and the ratio."""
    from .ops import get_wfmt
    stored = floats = 0
    for n in g.nodes:
        if n.wfmt and n.kernel > 1:                         # the k x k convs
            wf = get_wfmt(n.wfmt)
            per_ch = {"bias", wf.scale_name}
            stored += sum(a.nbytes for t, a in zip(wf.tensors, n.tensors) if t.name not in per_ch)
            floats += 4 * g.node_params(n)
    return {"bytes": int(stored), "float32_bytes": int(floats), "ratio": floats / max(stored, 1)}
