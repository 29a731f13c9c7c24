"""Classic CNN blocks and tiny whole nets written in plain PyTorch (no torchvision),
for the torch.fx import tests, and bad models for the CLI's error tests.
Each callable with no arguments returns a seeded module in eval mode."""
import torch
import torch.nn as nn
import torch.nn.functional as F


def _randomize_bn(net):
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.1)
    return net.eval()


def head(c, k=10):
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(c, k))


def conv_bn(cin, cout, k=3, s=1, groups=1, act=nn.ReLU):
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), act())


class Residual(nn.Module):           # ResNet basic block, projection shortcut
    def __init__(self, cin=8, cout=16, s=2):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, s, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, s, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(y)) + self.down(x))


class InvertedResidual(nn.Module):   # MobileNetV2: 1x1 expand, depthwise 3x3, ReLU6, linear 1x1, residual
    def __init__(self, c=8, t=4):
        super().__init__()
        self.conv = nn.Sequential(conv_bn(c, c * t, 1, act=nn.ReLU6), conv_bn(c * t, c * t, 3, groups=c * t,
                                                                               act=nn.ReLU6),
                                  nn.Conv2d(c * t, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.conv(x)


class Fire(nn.Module):               # SqueezeNet
    def __init__(self, cin=8, s=4, e=8):
        super().__init__()
        self.squeeze, self.e1, self.e3 = nn.Conv2d(cin, s, 1), nn.Conv2d(s, e, 1), nn.Conv2d(s, e, 3, padding=1)

    def forward(self, x):
        x = torch.relu(self.squeeze(x))
        return torch.cat([F.relu(self.e1(x)), F.relu(self.e3(x))], 1)


class Inception(nn.Module):          # GoogLeNet: 1x1 | 3x3 | 5x5 | ceil-mode pool -> 1x1
    def __init__(self, cin=8):
        super().__init__()
        self.b1 = nn.Conv2d(cin, 4, 1)
        self.b2 = nn.Sequential(nn.Conv2d(cin, 4, 1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1))
        self.b3 = nn.Sequential(nn.Conv2d(cin, 2, 1), nn.ReLU(), nn.Conv2d(2, 4, 5, padding=2))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), nn.Conv2d(cin, 2, 1))

    def forward(self, x):
        return F.relu(torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1))


class SE(nn.Module):                 # squeeze-and-excitation (MobileNetV3 / EfficientNet style)
    def __init__(self, c=8, r=4, gate=nn.Hardsigmoid):
        super().__init__()
        self.fc1, self.fc2, self.gate = nn.Conv2d(c, c // r, 1), nn.Conv2d(c // r, c, 1), gate()

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(F.silu(self.fc1(s))))


class Shuffle(nn.Module):            # ShuffleNet v1 unit: grouped 1x1, channel shuffle, depthwise 3x3, grouped 1x1
    def __init__(self, c=12, g=3):
        super().__init__()
        self.g = g
        self.c1, self.b1 = nn.Conv2d(c, c, 1, groups=g, bias=False), nn.BatchNorm2d(c)
        self.dw, self.b2 = nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False), nn.BatchNorm2d(c)
        self.c2 = nn.Conv2d(c, c, 1, groups=g)

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        n, c, h, w = y.size()
        y = y.view(n, self.g, c // self.g, h, w).transpose(1, 2).contiguous().view(n, -1, h, w)
        return F.relu(x + self.c2(self.b2(self.dw(y))))


class DenseLayer(nn.Module):         # DenseNet: pre-activation BN (standalone) -> relu -> conv, concat; transition avgpool
    def __init__(self, c=8, k=4):
        super().__init__()
        self.bn, self.conv = nn.BatchNorm2d(c), nn.Conv2d(c, k, 3, 1, 1, bias=False)
        self.trans = nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=True)

    def forward(self, x):
        return self.trans(torch.cat([x, self.conv(F.relu(self.bn(x)))], 1))


class Activations(nn.Module):        # every activation seprt lowers to `act`
    def __init__(self, c=8):
        super().__init__()
        self.c = nn.Conv2d(c, c, 3, padding=1)
        self.acts = nn.ModuleList([nn.LeakyReLU(0.1), nn.Hardswish(), nn.SiLU(), nn.ReLU6(), nn.Sigmoid()])

    def forward(self, x):
        x = self.acts[0](self.c(x))
        x = F.hardswish(self.acts[1](x))
        x = self.acts[2](x) + torch.sigmoid(x) + F.hardsigmoid(x)
        x = F.leaky_relu(self.acts[3](x), 0.2)
        return self.acts[4](x)


class Stem(nn.Module):
    """A stem conv and pool, a block, and a classifier head."""

    def __init__(self, block, c=8, out=None, pool=True):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, 1, 1), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.pool = nn.MaxPool2d(3, 2, 1) if pool else nn.Identity()
        self.block = block
        self.head = head(out or c)

    def forward(self, x):
        return self.head(self.block(self.pool(self.stem(x))))


class VGGHead(nn.Module):            # a Linear over a flattened 8x8 map (32x32 input) (NCHW -> NHWC weight permutation)
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2, 2),
                                      nn.Conv2d(8, 8, 3, 1, 1), nn.ReLU(), nn.AvgPool2d(2, 2))
        self.classifier = nn.Sequential(nn.Linear(8 * 8 * 8, 16), nn.ReLU(), nn.Dropout(), nn.Linear(16, 10))

    def forward(self, x):
        x = self.features(x)
        return self.classifier(x.view(x.size(0), -1))


class SqueezeHead(nn.Module):        # SqueezeNet's conv classifier: conv -> relu -> global pool -> flatten
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, 2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True), Fire())
        self.classifier = nn.Sequential(nn.Dropout(), nn.Conv2d(16, 10, 1), nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


def _seed(fn):
    torch.manual_seed(0)
    return _randomize_bn(fn())


BLOCKS = {
    "residual": lambda: Stem(Residual(8, 16, 2), out=16),
    "inverted_residual": lambda: Stem(InvertedResidual()),
    "fire": lambda: Stem(Fire(), out=16),
    "inception": lambda: Stem(Inception(), out=16),
    "se": lambda: Stem(SE()),
    "se_sigmoid": lambda: Stem(SE(gate=nn.Sigmoid)),
    "shuffle": lambda: Stem(nn.Sequential(nn.Conv2d(8, 12, 1), Shuffle()), out=12),
    "dense": lambda: Stem(DenseLayer(), out=12),
    "activations": lambda: Stem(Activations()),
    "vgg_flatten": VGGHead,
    "conv_classifier": SqueezeHead,
    # ResNet option A: x[:, :, ::2, ::2] and F.pad over channels -> one shortcut_a node
    "shortcut_a": lambda: Stem(__import__("training.models", fromlist=["BasicBlock"]).BasicBlock(8, 16, 2), out=16),
}


def block(name):
    return _seed(BLOCKS[name])


# tiny whole nets, one per family, for the CLI (called with no arguments)
def tiny_resnet():
    return _seed(lambda: Stem(nn.Sequential(Residual(8, 8, 1), Residual(8, 16, 2)), out=16))


def tiny_mobilenet():
    return _seed(lambda: Stem(nn.Sequential(InvertedResidual(), SE(), InvertedResidual())))


def tiny_googlenet():
    return _seed(lambda: Stem(nn.Sequential(Inception(), nn.MaxPool2d(3, 2, ceil_mode=True), Inception(16)), out=16))


# ---------------------------------------------------------------- bad models (CLI errors)

class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        if x.sum() > 0:                  # data-dependent control flow
            x = -x
        return self.c(x).mean((2, 3))


class Gelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(F.gelu(self.c(x)).mean((2, 3)))


class TwoOutputs(Gelu):
    def forward(self, x):
        y = self.c(x).mean((2, 3))
        return self.fc(y), y


def untraceable():
    return Untraceable()


def unsupported_op():
    return Gelu()


def two_outputs():
    return TwoOutputs()


def non_square():
    return nn.Sequential(nn.Conv2d(3, 4, (3, 1)), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


def asymmetric_padding():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=(1, 0)), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


def not_a_module():
    return 42


class ShuffleV2(nn.Module):          # ShuffleNetV2 unit: channel split (chunk), branch, concat, shuffle
    def __init__(self, c=8):
        super().__init__()
        h = c // 2
        self.branch = nn.Sequential(conv_bn(h, h, 1), nn.Conv2d(h, h, 3, 1, 1, groups=h, bias=False),
                                    nn.BatchNorm2d(h), conv_bn(h, h, 1))

    def forward(self, x):
        x1, x2 = x.chunk(2, dim=1)
        out = torch.cat((x1, self.branch(x2)), dim=1)
        n, c, hh, ww = out.size()
        return out.view(n, 2, c // 2, hh, ww).transpose(1, 2).contiguous().view(n, -1, hh, ww)


BLOCKS["shuffle_v2"] = lambda: Stem(ShuffleV2())


def stochastic_depth(x, p: float, mode: str, training: bool = True):
    """torchvision.ops.stochastic_depth's signature; an fx leaf there too (torch.fx.wrap)."""
    if not training or p == 0.0:
        return x
    keep = torch.empty(x.shape[0], 1, 1, 1).bernoulli_(1 - p)
    return x * keep / (1 - p)


torch.fx.wrap("stochastic_depth")


class SDResidual(InvertedResidual):  # EfficientNet-style residual with stochastic depth (identity in eval)
    def forward(self, x):
        return x + stochastic_depth(self.conv(x), 0.2, "row", self.training)


BLOCKS["stochastic_depth"] = lambda: Stem(SDResidual())


class BatchNormAct(nn.BatchNorm2d):  # timm's BatchNormAct2d: F.batch_norm on its own buffers (fx get_attr nodes)
    def __init__(self, c):
        super().__init__(c)
        self.act = nn.SiLU()

    def forward(self, x):
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.1, self.eps)
        return self.act(x)


class GhostLike(nn.Module):          # timm-style BN-act after a conv (folded) and before a concat (affine);
    def __init__(self, c=8):         # GhostNet's channel slice out[:, :c]
        super().__init__()
        self.c1, self.bn1 = nn.Conv2d(c, c, 1, bias=False), BatchNormAct(c)
        self.c2 = nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False)
        self.bn2 = BatchNormAct(2 * c)
        self.c = c

    def forward(self, x):
        y = self.bn1(self.c1(x))
        out = self.bn2(torch.cat([y, self.c2(y)], 1))
        return out[:, :self.c, :, :]


BLOCKS["timm_bn_act_ghost"] = lambda: Stem(GhostLike())


class BatchNormActAssert(BatchNormAct):  # timm 1.0's BatchNormAct2d: x.ndim read before F.batch_norm
    def forward(self, x):
        torch._assert(x.ndim == 4, "expected 4D input")
        return super().forward(x)


BLOCKS["timm_bn_act_assert"] = lambda: Stem(nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1, bias=False), BatchNormActAssert(8)))


class FunctionalLinear(nn.Linear):   # timm's Linear: F.linear on its own parameters
    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


BLOCKS["functional_linear"] = lambda: nn.Sequential(Stem(nn.Identity()).stem, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                                    FunctionalLinear(8, 10))


class TinyActivationsHead(nn.Module):  # timm's LCNet / MobileNetV3 head on the small activations of a random init
    """conv -> hardswish -> fresh BatchNorm2d (not after a conv: an affine with an all-zero
    bias) -> hardswish -> global pool -> 1x1 conv_head -> hardswish -> linear, every
    activation ~1e-5 (timm's lcnet_050 with random weights: ~1e-7 at the head). The
    int8 TFLite of that BN as MUL + ADD made LiteRT abort the process: the zero bias
    got scale 1.0, and int8 ADD needs 2 * max(input scales) < 2^20 * output scale."""

    def __init__(self, c=8, k=5):
        super().__init__()
        self.conv = nn.Conv2d(3, c, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(c)                   # mean 0, var 1, weight 1, bias 0: y = x / sqrt(1 + eps)
        self.conv_head = nn.Conv2d(c, 2 * c, 1, bias=False)
        self.linear = nn.Linear(2 * c, k, bias=False)
        with torch.no_grad():
            self.conv.weight.mul_(1e-4)

    def forward(self, x):
        x = self.bn(F.hardswish(self.conv(x)))
        x = F.hardswish(x).mean((2, 3), keepdim=True)   # timm's SelectAdaptivePool2d keeps (N, C, 1, 1)
        x = F.hardswish(self.conv_head(x))
        return self.linear(x.flatten(1))


def tiny_activations_head():
    torch.manual_seed(0)                              # no _randomize_bn: the BN stays fresh (zero bias)
    return TinyActivationsHead().eval()
