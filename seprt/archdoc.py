"""Render docs/architectures.md from seprt.arch (python -m seprt.archdoc > docs/architectures.md)."""
from . import arch
from .ops import get_op

HEAD = """# Architectures

Generated from `seprt/arch.py` by `python -m seprt.archdoc > docs/architectures.md`;
`tests/test_arch.py` checks this file is current. Weights are conv and FC
weights (biases and BN not counted, as in the paper). Shapes are H×W×C.
Every conv is followed by BN at training time (folded into a bias for the
runtime). `pattern` marks the 3×3 conv of a pattern residual block (PRB), the
conv that `--binarize prb` turns into a ±1 pattern; `--binarize all` also
binarizes every other k×k conv (k > 1).

Reading of the paper's tables (Tables 7 and 8): inside a module, svd1 (1×1)
reduces channels; slice1 and slice2 are PRBs (a 1×1 and a 3×3 conv in
parallel on the same input, summed, then ReLU; slice2 is fed by slice1);
svd2 (1×1) restores channels and the module input is added (skip), then ReLU.
Pooling is not in the tables: seprt puts a 3×3/2 max-pool (no padding) after
conv1, as in GoogLeNet, and a global average pool + fully connected
classifier after conv5. Module 5's svd1 uses 4 groups in both (as Table 7
lists; Table 8 lists 1, which gives 1.36M instead of the paper's 1.3M). ReLU
follows conv1..conv5 and svd1.

`sepnet-cifar` is seprt's own design for CIFAR-10: the same module, PRB and
4-group structure, sized so that its BQ file stays under 200 KB.
"""


def render() -> str:
    out = [HEAD]
    for aid in arch.ARCH_IDS:
        a = arch.get(aid)
        shapes, counts = a.shapes(), a.weight_counts()
        pattern = sum(n for name, n in counts.items()
                      if next(l for l in a.layers if l.name == name).role == arch.ROLE_PATTERN)
        out.append(f"\n## `{aid}`\n\n{a.description}. Input {'×'.join(map(str, a.input_shape))}, "
                   f"{a.num_classes} classes. **{a.params():,} weights**, {a.macs() / 1e6:.1f}M MACs; "
                   f"{pattern:,} of the weights are in PRB pattern convs.\n")
        out.append("| layer | op | kernel/stride/pad | groups | output | weights |\n|---|---|---|---|---|---|")
        for l in a.layers:
            attrs = arch.layer_attrs(l)
            if not attrs and not get_op(l.op).weighted and shapes[l.name] == shapes[l.inputs[0]]:
                continue                          # elementwise (relu, add): the layer names show them
            ksp = "/".join(str(attrs.get(k, "-")) for k in ("kernel", "stride", "pad")) if attrs else ""
            op = l.op + (" (pattern)" if l.role == arch.ROLE_PATTERN else "")
            out.append(f"| {l.name} | {op} | {ksp} | {attrs.get('groups', '')} | "
                       f"{'×'.join(map(str, shapes[l.name]))} | {counts.get(l.name, 0):,} |")
        out.append(f"| **total** | | | | | **{a.params():,}** |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render(), end="")
