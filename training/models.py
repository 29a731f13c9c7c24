"""seprt's built-in architectures as ordinary PyTorch modules.

    >>> import torch
    >>> net = resnet20().eval()
    >>> net(torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 10])
    >>> sepnet_cifar().binarize_presets["prb"]
    '*.conv3x3'

Each conv is an `nn.Conv2d` (no bias) followed by its own `nn.BatchNorm2d`,
the classifier an `nn.Linear`: the same networks as the layer lists in
`seprt/arch.py`, written as plain PyTorch so that they train, binarize
(`training.pattern`) and convert (the tracing converter) like any user
model. SPECs: ``training.models:resnet20`` ... ``training.models:sepnet_t8``.

`from_zoo_state_dict(arch_id, sd)` maps a zoo checkpoint's state_dict
(layer-list keys ``layers.<name>.weight|bn.*|pattern|alpha``, `training/checkpoint.py`) to these
modules; a pattern conv becomes weight = alpha * pattern, exactly the
weight it computed with. `ARCH_TO_SPEC` names the constructor of each id.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from seprt import arch as arch_mod


def _conv(cin: int, cout: int, k: int, stride: int = 1, pad: int | None = None, groups: int = 1) -> nn.Conv2d:
    c = nn.Conv2d(cin, cout, k, stride, k // 2 if pad is None else pad, groups=groups, bias=False)
    nn.init.kaiming_normal_(c.weight, mode="fan_out", nonlinearity="relu")
    return c


class ShortcutA(nn.Module):
    """Option-A ResNet shortcut: take every `stride`-th pixel, zero-pad the
    channels equally on both sides from cin to cout. x (N, cin, H, W) ->
    (N, cout, ceil(H/s), ceil(W/s))."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride, self.cin, self.cout = stride, cin, cout
        self.pad = ((cout - cin) // 2, cout - cin - (cout - cin) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0) + self.pad)

    def extra_repr(self) -> str:
        return f"{self.cin}->{self.cout}, stride={self.stride}"


class BasicBlock(nn.Module):
    """conv1 3x3 (stride) -> bn1 -> relu -> conv2 3x3 -> bn2, + shortcut, relu."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = _conv(cin, cout, 3, stride), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = _conv(cout, cout, 3), nn.BatchNorm2d(cout)
        self.shortcut = ShortcutA(cin, cout, stride) if (stride != 1 or cin != cout) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class ResNetCifar(nn.Module):
    """He et al. (2016) CIFAR ResNet, depth = 6n + 2, option-A shortcuts.
    Modules: conv1/bn1, stage{1,2,3}.block{i} (BasicBlock), fc."""

    binarize_presets = {"inner": "all,!conv1"}

    def __init__(self, depth: int = 20, num_classes: int = 10):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"ResNet depth {depth} is not 6n + 2")
        n = (depth - 2) // 6
        self.conv1, self.bn1 = _conv(3, 16, 3), nn.BatchNorm2d(16)
        c = 16
        for s, cout in enumerate((16, 32, 64), start=1):
            blocks = nn.Sequential()
            for i in range(n):
                blocks.add_module(f"block{i}", BasicBlock(c, cout, 2 if (s > 1 and i == 0) else 1))
                c = cout
            self.add_module(f"stage{s}", blocks)
        self.fc = nn.Linear(64, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, 3, H, W) -> pooled features (N, 64)."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.stage3(self.stage2(self.stage1(x)))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class PRB(nn.Module):
    """Pattern residual block: conv1x1 and conv3x3 (the pattern conv) in
    parallel on the same input, each with its BN, summed, relu."""

    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.conv1x1, self.bn1x1 = _conv(cin, cout, 1, groups=groups), nn.BatchNorm2d(cout)
        self.conv3x3, self.bn3x3 = _conv(cin, cout, 3, groups=groups), nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn1x1(self.conv1x1(x)) + self.bn3x3(self.conv3x3(x)))


class SEPModule(nn.Module):
    """svd1 (1x1 reduce to `width`) -> slice1 PRB (width) -> slice2 PRB
    (width/2) -> svd2 (1x1 restore to c), + x, relu."""

    def __init__(self, c: int, width: int, svd1_groups: int = 1, groups: int = 4):
        super().__init__()
        self.svd1, self.bn_svd1 = _conv(c, width, 1, groups=svd1_groups), nn.BatchNorm2d(width)
        self.slice1 = PRB(width, width, groups)
        self.slice2 = PRB(width, width // 2, groups)
        self.svd2, self.bn_svd2 = _conv(width // 2, c, 1), nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn_svd1(self.svd1(x)))
        h = self.slice2(self.slice1(h))
        return F.relu(self.bn_svd2(self.svd2(h)) + x)


class SEPNet(nn.Module):
    """SEP-Net: a stem conv, stages of SEP modules separated by strided 3x3
    convs, global average pool, fc. `plan` lists ("conv", name, cout, k,
    stride, pad, groups) / ("pool",) / ("module", name, c, width, svd1_groups)
    in order (see `sepnet_cifar`, `sepnet_t7`, `sepnet_t8`)."""

    binarize_presets = {"prb": "*.conv3x3", "inner": "all,!conv1"}

    def __init__(self, plan: list[tuple], num_classes: int):
        super().__init__()
        self.plan = [p[:2] for p in plan]
        c = 3
        for p in plan:
            if p[0] == "conv":
                _, name, cout, k, stride, pad, groups = p
                self.add_module(name, _conv(c, cout, k, stride, pad, groups))
                self.add_module("bn" + name[4:], nn.BatchNorm2d(cout))
                c = cout
            elif p[0] == "module":
                _, name, c, width, g = p
                self.add_module(name, SEPModule(c, width, svd1_groups=g))
        self.fc = nn.Linear(c, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for p in self.plan:
            if p[0] == "conv":
                x = F.relu(getattr(self, "bn" + p[1][4:])(getattr(self, p[1])(x)))
            elif p[0] == "pool":
                x = F.max_pool2d(x, 3, 2)
            else:
                x = getattr(self, p[1])(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def resnet20(num_classes: int = 10) -> ResNetCifar:
    return ResNetCifar(20, num_classes)


def resnet32(num_classes: int = 10) -> ResNetCifar:
    return ResNetCifar(32, num_classes)


def resnet44(num_classes: int = 10) -> ResNetCifar:
    return ResNetCifar(44, num_classes)


def resnet56(num_classes: int = 10) -> ResNetCifar:
    return ResNetCifar(56, num_classes)


def sepnet_cifar(num_classes: int = 10) -> SEPNet:
    """conv1 3x3 (32) -> 2x module(32) -> conv2 3x3/2 g2 (64) -> 3x module(64)
    -> conv3 3x3/2 g4 (160) -> 4x module(160) -> GAP -> fc."""
    plan = [("conv", "conv1", 32, 3, 1, 1, 1)] + [("module", f"module{i}", 32, 16, 1) for i in (1, 2)]
    plan += [("conv", "conv2", 64, 3, 2, 1, 2)] + [("module", f"module{i}", 64, 32, 1) for i in (3, 4, 5)]
    plan += [("conv", "conv3", 160, 3, 2, 1, 4)] + [("module", f"module{i}", 160, 80, 1) for i in (6, 7, 8, 9)]
    return SEPNet(plan, num_classes)


def _sepnet_imagenet(conv4_groups, conv3_groups, conv5_out, conv5_groups, num_classes) -> SEPNet:
    plan = [("conv", "conv1", 64, 5, 2, 1, 1), ("pool", "pool1"), ("module", "module1", 64, 32, 1),
            ("conv", "conv2", 128, 3, 2, 1, 1), ("module", "module2", 128, 64, 1),
            ("conv", "conv3", 256, 3, 2, 1, conv3_groups), ("module", "module3", 256, 128, 1),
            ("module", "module4", 256, 128, 1), ("conv", "conv4", 256, 3, 2, 1, conv4_groups),
            ("module", "module5", 256, 128, 4), ("module", "module6", 256, 128, 1),
            ("conv", "conv5", conv5_out, 3, 2, 1, conv5_groups)]
    return SEPNet(plan, num_classes)


def sepnet_t8(num_classes: int = 1000) -> SEPNet:
    """The paper's Table 8 SEP-Net (1.3M weights), 224x224."""
    return _sepnet_imagenet(4, 4, 512, 16, num_classes)


def sepnet_t7(num_classes: int = 1000) -> SEPNet:
    """The paper's Table 7 SEP-Net, 224x224."""
    return _sepnet_imagenet(1, 4, 400, 4, num_classes)


ARCH_TO_SPEC = {a: "training.models:" + a.replace("-", "_") for a in arch_mod.ARCH_IDS}


def build(arch_id: str) -> nn.Module:
    """The module for a seprt.arch id (ValueError listing the ids otherwise)."""
    a = arch_mod.get(arch_id)
    return globals()[arch_id.replace("-", "_")](a.num_classes)


def zoo_name_map(arch_id: str) -> dict[str, tuple[str, str | None]]:
    """{arch layer name: (module path, BN module path or None for fc)} for
    every conv and fc of `arch_id`."""
    out = {}
    for l in arch_mod.get(arch_id).layers:
        if l.op == "fc":
            out[l.name] = (l.name, None)
        elif l.op != "conv":
            continue
        elif arch_id.startswith("resnet"):
            parent, _, leaf = l.name.rpartition(".")          # conv1 / stageS.blockI.conv{1,2}
            out[l.name] = (l.name, (parent + "." if parent else "") + "bn" + leaf[4:])
        else:
            parts = l.name.split(".")
            if len(parts) == 1:                                # conv1..conv5
                out[l.name] = (l.name, "bn" + l.name[4:])
            elif len(parts) == 2:                              # moduleM.svd{1,2}
                out[l.name] = (l.name, f"{parts[0]}.bn_{parts[1]}")
            else:                                              # moduleM.sliceS.{1x1,3x3}
                base = f"{parts[0]}.{parts[1]}."
                out[l.name] = (base + "conv" + parts[2], base + "bn" + parts[2])
    return out


def from_zoo_state_dict(arch_id: str, sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A zoo checkpoint's state_dict (layer-list keys) -> (state_dict of
    `build(arch_id)`, names of its pattern convs in the new module). Pattern
    convs get weight = alpha[o] * pattern[o]."""
    out, binarized = {}, []
    for layer, (mod, bn) in zoo_name_map(arch_id).items():
        p = "layers." + layer.replace(".", "__") + "."
        if bn is None:
            out[mod + ".weight"], out[mod + ".bias"] = sd[p + "weight"], sd[p + "bias"]
            continue
        if p + "pattern" in sd:
            out[mod + ".weight"] = sd[p + "alpha"].view(-1, 1, 1, 1) * sd[p + "pattern"]
            binarized.append(mod)
        else:
            out[mod + ".weight"] = sd[p + "weight"]
        for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            out[f"{bn}.{k}"] = sd[f"{p}bn.{k}"]
    return {k: v.detach().clone() for k, v in out.items()}, binarized
