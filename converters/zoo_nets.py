"""Classic ImageNet CNNs as ordinary PyTorch modules, for `--model converters.zoo_nets:NAME`.

    googlenet        the paper's GoogLeNet (Tables 4, 5): the original BVLC design, 5x5 convs in
                     the third inception branch, ceil-mode pools, no batch norm, no LRN, no aux heads
    c_inception      the paper's C-InceptionNet: that GoogLeNet with every 5x5 conv removed (the
                     whole 1x1 -> 5x5 branch, so each inception module concatenates three branches)
    resnet18         He et al. 2016 (torchvision's layout and state-dict keys)
    resnext50_32x4d  Xie et al. 2017: ResNet-50's bottlenecks with 3x3 convs of 32 groups, 4, 8, 16
                     and 32 channels each (torchvision's layout and state-dict keys)
    mobilenet_v2     Sandler et al. 2018 (torchvision's layout and state-dict keys)
    squeezenet1_1    Iandola et al. 2016, v1.1 (torchvision's layout and state-dict keys; the
                     classifier is a 1x1 conv followed by global pooling)

Every callable returns the network with random weights (seeded) and, where it
has batch norm, realistic running statistics from a few train-mode passes
over random images: no ImageNet weights exist here. torchvision's own
models work the same way (`--model torchvision.models:resnet18`).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _bn_stats(net: nn.Module, size: int = 224, seed: int = 0) -> nn.Module:
    """Running BN statistics from 2 train-mode passes on random normal images; eval mode."""
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    if bns:
        for m in bns:
            m.momentum = None
            m.reset_running_stats()
        net.train()
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for _ in range(2):
                net(torch.randn(4, 3, size, size, generator=g))
    return net.eval()


# ------------------------------------------------------------ GoogLeNet (BVLC) and C-InceptionNet

class ConvReLU(nn.Sequential):
    def __init__(self, cin, cout, k, stride=1, pad=0):
        super().__init__(nn.Conv2d(cin, cout, k, stride, pad), nn.ReLU(inplace=True))


class Inception(nn.Module):
    """1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3/1 max pool -> 1x1, concatenated (5x5 branch optional)."""

    def __init__(self, cin, c1, c3r, c3, c5r, c5, pp, five=True):
        super().__init__()
        self.branch1 = ConvReLU(cin, c1, 1)
        self.branch2 = nn.Sequential(ConvReLU(cin, c3r, 1), ConvReLU(c3r, c3, 3, pad=1))
        self.branch3 = nn.Sequential(ConvReLU(cin, c5r, 1), ConvReLU(c5r, c5, 5, pad=2)) if five else None
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), ConvReLU(cin, pp, 1))

    def forward(self, x):
        b = [self.branch1(x), self.branch2(x)]
        if self.branch3 is not None:
            b.append(self.branch3(x))
        b.append(self.branch4(x))
        return torch.cat(b, 1)


# (c1, c3 reduce, c3, c5 reduce, c5, pool proj) of each module, BVLC deploy.prototxt
INCEPTIONS = {"3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
              "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
              "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
              "4e": (256, 160, 320, 32, 128, 128), "5a": (256, 160, 320, 32, 128, 128),
              "5b": (384, 192, 384, 48, 128, 128)}


class GoogLeNet(nn.Module):
    """BVLC GoogLeNet (Szegedy et al. 2015) without LRN and auxiliary classifiers;
    five=False removes every 5x5 branch (the paper's C-InceptionNet)."""

    def __init__(self, num_classes=1000, five=True):
        super().__init__()
        self.conv1 = ConvReLU(3, 64, 7, 2, 3)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2_reduce = ConvReLU(64, 64, 1)
        self.conv2 = ConvReLU(64, 192, 3, pad=1)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        c = 192
        mods = {}
        for name, (c1, c3r, c3, c5r, c5, pp) in INCEPTIONS.items():
            mods[name] = Inception(c, c1, c3r, c3, c5r, c5, pp, five)
            c = c1 + c3 + (c5 if five else 0) + pp
        self.inception = nn.ModuleDict(mods)
        self.pool3 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.pool4 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.dropout = nn.Dropout(0.4)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.pool2(self.conv2(self.conv2_reduce(self.pool1(self.conv1(x)))))
        for name, m in self.inception.items():
            x = m(x)
            if name == "3b":
                x = self.pool3(x)
            elif name == "4e":
                x = self.pool4(x)
        x = F.adaptive_avg_pool2d(x, 1)             # BVLC: 7x7/1 average pool at 224x224
        return self.fc(self.dropout(torch.flatten(x, 1)))


def _seeded(build, seed=0):
    torch.manual_seed(seed)
    return build()


def googlenet() -> nn.Module:
    return _seeded(lambda: GoogLeNet()).eval()


def c_inception() -> nn.Module:
    return _seeded(lambda: GoogLeNet(five=False)).eval()


# ------------------------------------------------------------ ResNet-18

def _projection(cin, cout, stride):
    """torchvision's `downsample`: 1x1 conv (stride) + BN when the shape changes, else None."""
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = _projection(cin, cout, stride)

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + idt)


class ResNet(nn.Module):
    """torchvision's ResNet trunk: 7x7/2 conv, BN, ReLU, 3x3/2 max pool, layer1..layer4
    (stages() -> four lists of blocks, built after the stem), average pool, fc."""

    def __init__(self, stages, c_out, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for i, blocks in enumerate(stages(), start=1):
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(c_out, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _resnet18_net(num_classes=1000) -> ResNet:
    def stages():
        c, out = 64, []
        for i, cout in enumerate((64, 128, 256, 512), start=1):
            out.append([BasicBlock(c, cout, 1 if i == 1 else 2), BasicBlock(cout, cout, 1)])
            c = cout
        return out
    return ResNet(stages, 512, num_classes)


def resnet18() -> nn.Module:
    return _bn_stats(_seeded(_resnet18_net))


# ------------------------------------------------------------ ResNeXt-50 (32x4d)

class Bottleneck(nn.Module):
    """torchvision's: 1x1 -> 3x3 (stride, groups) -> 1x1 (x4 channels), projection shortcut when the shape changes."""

    def __init__(self, cin, planes, stride, groups, base_width):
        super().__init__()
        width, cout = planes * base_width // 64 * groups, planes * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection(cin, cout, stride)

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + idt)


def _resnext50_net(groups=32, base_width=4, num_classes=1000) -> ResNet:
    def stages():
        c, out = 64, []
        for i, (planes, n) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3)), start=1):
            out.append([])
            for j in range(n):
                out[-1].append(Bottleneck(c, planes, 2 if j == 0 and i > 1 else 1, groups, base_width))
                c = planes * 4
        return out
    return ResNet(stages, 2048, num_classes)


def resnext50_32x4d() -> nn.Module:
    return _bn_stats(_seeded(_resnext50_net))


# ------------------------------------------------------------ MobileNetV2

class ConvBNReLU6(nn.Sequential):
    def __init__(self, cin, cout, k=3, stride=1, groups=1):
        super().__init__(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers = [ConvBNReLU6(cin, hidden, 1)] if expand != 1 else []
        layers += [ConvBNReLU6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))

    def __init__(self, num_classes=1000):
        super().__init__()
        feats = [ConvBNReLU6(3, 32, 3, 2)]
        c = 32
        for t, cout, n, s in self.SETTINGS:
            for i in range(n):
                feats.append(InvertedResidual(c, cout, s if i == 0 else 1, t))
                c = cout
        feats.append(ConvBNReLU6(c, 1280, 1))
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v2() -> nn.Module:
    return _bn_stats(_seeded(MobileNetV2))


# ------------------------------------------------------------ SqueezeNet 1.1

class Fire(nn.Module):
    def __init__(self, cin, squeeze, e1, e3):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                          self.expand3x3_activation(self.expand3x3(x))], 1)


class SqueezeNet11(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(512, num_classes, 1), nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


def squeezenet1_1() -> nn.Module:
    return _seeded(SqueezeNet11).eval()


NETS = {"googlenet": googlenet, "c_inception": c_inception, "resnet18": resnet18, "mobilenet_v2": mobilenet_v2,
        "squeezenet1_1": squeezenet1_1}
