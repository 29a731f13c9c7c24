"""training.pattern: PatternConv2d swapped into a plain nn.Module."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from training import pattern


class Net(nn.Module):
    """A user-style module: nested Sequential, a grouped/dilated conv with
    bias, a 1x1 conv, no seprt code anywhere."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2, bias=True), nn.ReLU(),
                                  nn.Conv2d(8, 6, 1), nn.ReLU(), nn.Conv2d(6, 6, (3, 5), stride=2, padding=(1, 2)))
        self.head = nn.Linear(6, 4)

    def forward(self, x):
        x = self.body(F.relu(self.bn(self.stem(x))))
        return self.head(x.mean((2, 3)))


def test_forward_is_conv_with_alpha_times_sign():
    torch.manual_seed(0)
    c = nn.Conv2d(4, 5, 3, stride=2, padding=1, groups=1, bias=True)
    with torch.no_grad():
        c.weight[0].zero_()                       # sign(0) = +1, alpha = 0
    p = pattern.PatternConv2d.from_conv(c, "refine")
    w = c.weight.detach()
    alpha = w.abs().flatten(1).mean(1)
    b = torch.where(w >= 0, 1.0, -1.0)
    x = torch.randn(2, 4, 7, 9)
    ref = F.conv2d(x, alpha.view(-1, 1, 1, 1) * b, c.bias, 2, 1)
    assert torch.allclose(p(x), ref, atol=1e-6)
    assert torch.equal(p.pattern()[0], torch.ones_like(w[0])) and p.alpha[0] == 0
    # hand-made: one filter [[0.5, -0.25], [0, -1]] -> B = [[1, -1], [1, -1]], alpha = 1.75 / 4
    h = nn.Conv2d(1, 1, 2, bias=False)
    with torch.no_grad():
        h.weight.copy_(torch.tensor([[[[0.5, -0.25], [0.0, -1.0]]]]))
    hp = pattern.PatternConv2d.from_conv(h)
    assert torch.equal(hp.effective_weight(), torch.tensor([[[[1., -1.], [1., -1.]]]]) * (1.75 / 4))


def test_refine_freezes_the_pattern_ste_learns_it():
    torch.manual_seed(0)
    net = Net()
    ref = copy.deepcopy(net)
    names = pattern.binarize_modules(ref, "all", "refine")
    assert names == ["stem", "body.0", "body.4"]            # 1x1 body.2 stays real
    ref(torch.randn(2, 3, 8, 8)).sum().backward()
    for n in names:
        m = ref.get_submodule(n)
        assert not m.weight.requires_grad and m.weight.grad is None and m.alpha.grad is not None
    assert ref.body[2].weight.grad is not None
    ste = copy.deepcopy(net)
    pattern.binarize_modules(ste, "all", "ste")
    ste(torch.randn(2, 3, 8, 8)).sum().backward()
    m = ste.body[4]
    assert m.weight.grad is not None and m.weight.grad.abs().sum() > 0        # straight through
    # the straight-through gradient of the weight is alpha * dL/d(effective weight)
    w = m.weight.detach().clone().requires_grad_(True)
    x = torch.randn(1, 6, 4, 4)
    g = torch.randn(1, 6, 2, 1)
    m.zero_grad()
    (m(x) * g).sum().backward()
    eff = (m.alpha.detach().view(-1, 1, 1, 1) * pattern.sign_pm1(w.detach())).requires_grad_(True)
    (F.conv2d(x, eff, m.bias, m.stride, m.padding) * g).sum().backward()
    assert torch.allclose(m.weight.grad, eff.grad * m.alpha.detach().view(-1, 1, 1, 1), atol=1e-6)


def test_plain_state_dict_loads_into_the_original_class_with_the_same_outputs():
    torch.manual_seed(1)
    net = Net().eval()
    pnet = copy.deepcopy(net)
    pattern.binarize_modules(pnet, "all", "ste")
    with torch.no_grad():
        for m in pattern.pattern_modules(pnet).values():
            m.alpha.mul_(torch.rand_like(m.alpha) + 0.5)     # as if trained
            m.alpha[0] = -m.alpha[0]                         # a negative alpha flips the pattern, same weight
    sd = pattern.plain_state_dict(pnet)
    assert list(sd) == list(net.state_dict())                # the user's keys, in order, no alpha
    fresh = Net().eval()
    fresh.load_state_dict(sd, strict=True)
    x = torch.randn(3, 3, 9, 11)
    with torch.no_grad():
        assert torch.allclose(fresh(x), pnet(x), atol=1e-5)
    for n in ("stem", "body.0", "body.4"):
        assert pattern.is_pattern_weight(sd[n + ".weight"])
    assert not pattern.is_pattern_weight(sd["body.2.weight"])
    # back to patterns from the plain weights: the same effective weights (alpha = |W| >= 0)
    again = copy.deepcopy(fresh)
    pattern.binarize_modules(again, ["stem", "body.0", "body.4"], "refine")
    for n in ("stem", "body.0", "body.4"):
        assert torch.allclose(again.get_submodule(n).effective_weight(), pnet.get_submodule(n).effective_weight(),
                              atol=1e-7)
        assert bool((again.get_submodule(n).alpha >= 0).all())
    # unbinarize: plain Conv2d modules again
    pattern.unbinarize(pnet)
    assert type(pnet.stem) is nn.Conv2d and torch.equal(pnet.stem.weight, sd["stem.weight"])


def test_select_all_globs_exclusions_presets_callables():
    net = Net()
    assert pattern.select(net, "all") == ["stem", "body.0", "body.4"]
    assert pattern.select(net, "body.*") == ["body.0", "body.4"]
    assert pattern.select(net, "all,!stem") == ["body.0", "body.4"]
    assert pattern.select(net, ["stem", "body.4"]) == ["stem", "body.4"]
    assert pattern.select(net, lambda n, m: m.groups == 2) == ["body.0"]
    net.binarize_presets = {"inner": "all,!stem"}
    assert pattern.select(net, "inner") == ["body.0", "body.4"]


def test_conv2d_subclasses_with_their_own_forward_are_not_swapped():
    class WSConv(nn.Conv2d):
        def forward(self, x):
            w = self.weight - self.weight.mean((1, 2, 3), keepdim=True)
            return self._conv_forward(x, w, self.bias)

    net = nn.Sequential(nn.Conv2d(3, 4, 3), WSConv(4, 4, 3))
    assert pattern.select(net, "all") == ["0"]
    with pytest.raises(ValueError, match="names WSConv .*subclass of nn.Conv2d"):
        pattern.select(net, "1")


@pytest.mark.parametrize("which,msg", [("layer9.*", "matches no k x k conv"),
                                       ("body.2", "names only 1x1 conv"),
                                       ("", "empty --binarize")])
def test_select_refuses_patterns_that_match_nothing(which, msg):
    net = Net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match=msg):
        pattern.binarize_modules(net, which)
    assert not pattern.pattern_modules(net)                  # nothing swapped
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_reestimate_bn_is_the_plain_average_over_batches():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    xs = [torch.randn(5, 3, 6, 6) * (i + 1) for i in range(3)]
    n = pattern.reestimate_bn(net, [(x, None) for x in xs], max_batches=2)
    assert n == 2 and not net[1].training is None
    with torch.no_grad():
        h = [net[0](x) for x in xs[:2]]
    means = torch.stack([v.mean((0, 2, 3)) for v in h]).mean(0)
    assert torch.allclose(net[1].running_mean, means, atol=1e-5)
    assert net[1].momentum == 0.1


def test_docstring_examples_run():
    import doctest
    from training import models, spec
    for mod in (pattern, models, spec):
        r = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert r.failed == 0 and r.attempted > 0, mod.__name__


def test_quantization_error_statistic():
    """The paper's Table 1 statistic (pattern.quantization_error) against a numpy reference."""
    import numpy as np
    from training import models
    torch.manual_seed(1)
    net = models.sepnet_cifar()
    q = pattern.quantization_error(net)
    assert set(q) == {"1x1", "3x3"}
    # per filter ||W - alpha B||^2 / (c k k), alpha = mean|W|, B = sign(W) with sign(0) = +1; mean over filters
    ref = {}
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            w = m.weight.detach().double().numpy().reshape(m.out_channels, -1)
            a = np.abs(w).mean(1, keepdims=True)
            e = ((w - a * np.where(w >= 0, 1.0, -1.0)) ** 2).mean(1)
            ref.setdefault(f"{m.kernel_size[0]}x{m.kernel_size[1]}", []).extend(e.tolist())
    for k, errs in ref.items():
        assert q[k]["filters"] == len(errs)
        assert q[k]["error"] == pytest.approx(float(np.mean(errs)), rel=1e-9)
    # a hand-made filter: W = [1, -3, 2, 0] -> alpha 1.5, error 5/4
    conv = torch.nn.Conv2d(1, 1, 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[1.0, -3.0], [2.0, 0.0]]]]))
    assert pattern.quantization_error(conv)["2x2"]["error"] == pytest.approx(5 / 4)
    # binarized (and skipped) convs are left out
    pattern.binarize_modules(net, "all")
    assert set(pattern.quantization_error(net)) == {"1x1"}
    assert set(pattern.quantization_error(models.sepnet_cifar(), skip=pattern.kxk_convs(net))) == {"1x1"}
