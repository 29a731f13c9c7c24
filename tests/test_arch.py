"""Architecture ids: parameter counts and shapes (docs/architectures.md)."""
import pytest

from seprt import arch


@pytest.mark.parametrize("arch_id,params", [
    ("sepnet-t8", 1_337_792),      # paper Table 8, module5 svd1 at 4 groups
    ("sepnet-t7", 1_824_832),      # paper Table 7, "about 1.83M"
    ("resnet20", 268_336), ("resnet32", 461_872), ("resnet44", 655_408), ("resnet56", 848_944),
])
def test_param_counts(arch_id, params):
    assert arch.get(arch_id).params() == params


def test_sepnet_cifar_budget_and_structure():
    a = arch.get("sepnet-cifar")
    assert a.params() <= 300_000
    patterns = [l for l in a.layers if l.role == arch.ROLE_PATTERN]
    assert patterns and all(l.kernel == 3 and l.groups == 4 for l in patterns)
    assert a.shapes()[a.output] == (10,) and a.labels == arch.CIFAR10_LABELS


def test_sepnet_t8_shapes():
    s = arch.get("sepnet-t8").shapes()
    assert s["conv1"] == (111, 111, 64) and s["pool1"] == (55, 55, 64)
    assert s["conv5"] == (4, 4, 512) and s["fc"] == (1000,)


def test_prb_convs_of_t8_leave_1_1m_real_weights():
    a = arch.get("sepnet-t8")
    counts = a.weight_counts()
    real = sum(n for name, n in counts.items()
               if next(l for l in a.layers if l.name == name).role != arch.ROLE_PATTERN)
    assert real == 1_099_328       # the paper's SEP-Net-B: "1.1M"


def test_unknown_arch():
    with pytest.raises(ValueError, match="known: sepnet-t8"):
        arch.get("resnet18")


def test_architectures_doc_is_current():
    import os
    from seprt import archdoc
    path = os.path.join(os.path.dirname(__file__), "..", "docs", "architectures.md")
    assert open(path, encoding="utf-8").read() == archdoc.render(), \
        "regenerate: python -m seprt.archdoc > docs/architectures.md"
