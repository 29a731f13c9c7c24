"""training.models: the built-in archs as ordinary modules, equal to their
layer lists (seprt/arch.py) and loading the zoo exactly."""
import glob
import os

import pytest
import torch

from seprt import arch
from seprt import variants
from training import checkpoint, modelckpt, models, pattern

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _randomize_bn(net):
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 2 - 1)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)


@pytest.mark.parametrize("arch_id", arch.ARCH_IDS)
def test_modules_are_the_layer_lists(arch_id):
    """Every conv and fc of the arch's layer list is a module with its shape;
    the seprt reference executor, running the layer list with the module's
    BN-folded weights (converters/torch_import.py), gives the module's logits."""
    import numpy as np
    from converters.torch_import import from_torch
    import seprt
    from seprt import format as fmt
    torch.manual_seed(0)
    a = arch.get(arch_id)
    net = models.build(arch_id).eval()
    _randomize_bn(net)
    w = sum(m.weight.numel() for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert w == a.params()
    if a.input_shape[0] > 32:
        return                                               # ImageNet sizes: shapes only (slow)
    imp = from_torch(net, a.input_shape[:2])
    layers = {n.name: n.layer for n in imp.nodes if n.layer is not None}
    names = models.zoo_name_map(arch_id)
    g = variants.build_graph(a, {l: layers[mod] for l, (mod, _) in names.items()}, "R",
                             {**variants.default_preprocess(a), "labels": list(a.labels)})
    x = np.random.default_rng(0).standard_normal((2,) + a.input_shape).astype(np.float32)
    want = imp.logits(x)
    got = seprt.Model.from_bytes(fmt.to_bytes(g), engine="reference").logits(x)
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def test_presets_choose_the_zoo_modes():
    for arch_id, mode in (("resnet20", "all"), ("resnet20", "inner"), ("sepnet-cifar", "prb"),
                          ("sepnet-cifar", "all"), ("sepnet-cifar", "inner")):
        a = arch.get(arch_id)
        names = [l.name for l in a.layers if l.op == "conv" and variants.binarized_by(l, mode)]
        mp = models.zoo_name_map(arch_id)
        assert pattern.select(models.build(arch_id), mode) == [mp[n][0] for n in names], (arch_id, mode)


@pytest.mark.parametrize("path", sorted(p for p in glob.glob(os.path.join(ROOT, "models", "*.pt"))
                                         if "-stacked-" not in p),      # training/stacked.py's format
                         ids=lambda p: os.path.basename(p))
def test_zoo_checkpoints_load_exactly_and_round_trip(path):
    zk = checkpoint.load(path)
    ck = modelckpt.read(path)                                  # converted on the fly (exact: test_zoo_reconvert)
    assert ck["labels"] == zk["labels"] and ck["preprocess"] == zk["preprocess"]
    assert (ck["stage"] == "full") == (zk["binarize"] is None)
    back = modelckpt.to_zoo(ck)
    assert back["binarize"] == zk["binarize"]
    b, z = back["state_dict"], zk["state_dict"]
    assert set(b) == set(z)
    for k, v in z.items():
        if k.endswith(".alpha"):      # a learned negative alpha comes back as |alpha| with the pattern flipped
            p = k[:-len("alpha")]
            assert torch.allclose(b[k].view(-1, 1, 1, 1) * b[p + "pattern"], v.view(-1, 1, 1, 1) * z[p + "pattern"],
                                  rtol=1e-6, atol=0), k
            assert bool((b[k] >= 0).all())
        elif not k.endswith(".pattern"):
            assert torch.equal(b[k], v), k


@pytest.mark.parametrize("ckpt,binfile", [("resnet20-ste.pt", "resnet20-ste-B.bin"),
                                          ("sepnet-cifar-refined-prb.pt", "sepnet-cifar-B.bin")])
def test_zoo_round_trip_converts_to_the_shipped_logits(tmp_path, ckpt, binfile, capsys):
    """models/*.pt -> module checkpoint (import-zoo) -> zoo checkpoint (export-zoo) -> today's converter:
    the same logits as the shipped .bin (B variant: no calibration images needed)."""
    import numpy as np
    import seprt
    from converters.__main__ import main as convert
    from training import train
    mod, zoo, out = (str(tmp_path / n) for n in ("module.pt", "zoo.pt", "B.bin"))
    assert train.main(["import-zoo", os.path.join(ROOT, "models", ckpt), "--out", mod]) == 0
    assert train.main(["export-zoo", mod, "--out", zoo]) == 0
    assert convert(["seprt", zoo, "-o", out, "--variant", "B"]) == 0
    x = np.random.default_rng(0).standard_normal((4, 32, 32, 3)).astype(np.float32)
    ours = seprt.Model(out, engine="reference").logits(x)
    shipped = seprt.Model(os.path.join(ROOT, "models", binfile), engine="reference").logits(x)
    assert np.array_equal(ours, shipped)


@pytest.mark.parametrize("name", ["resnet20", "sepnet_cifar"])
def test_builtin_modules_trace_with_torch_fx(name):
    """What the tracing converter sees: plain Conv2d/BatchNorm2d/Linear/Identity
    modules, relu, add, adaptive_avg_pool2d, flatten; ResNet's option-A
    shortcut (`ShortcutA`) traces to a strided slice + F.pad over channels."""
    import torch.fx as fx
    m = getattr(models, name)().eval()
    g = fx.symbolic_trace(m)
    kinds = {type(g.get_submodule(n.target)).__name__ for n in g.graph.nodes if n.op == "call_module"}
    assert kinds <= {"Conv2d", "BatchNorm2d", "Linear", "Identity"}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(g(x), m(x))
