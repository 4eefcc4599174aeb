"""ResNet, last stride 1, (D)NL blocks after the last m blocks of a stage (docs/model.md §1.1-1.2).

Parameter names follow torchvision's ResNet (conv1, bn1, layer1..layer4, downsample.0/1) so that
ImageNet weights for ResNet-50 load directly; the non-local blocks live in a separate `nonlocal`
ModuleList so they never shift those names. `block="basic"` with small widths gives the tiny preset.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from reid_model.choices import BLOCK_EXPANSION
from reid_model.modeling.dnl import DisentangledNonLocal


class BasicBlock(nn.Module):
    expansion = BLOCK_EXPANSION["basic"]

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision v1.5 bottleneck: the stride sits on the 3x3 conv."""

    expansion = BLOCK_EXPANSION["bottleneck"]

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


#: Residual block types by name (`model.block`).
BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"bottleneck": Bottleneck, "basic": BasicBlock}


def nonlocal_positions(num_blocks: int, num_nonlocal: int) -> list[int]:
    """Block indices (0-based) after which a non-local block goes: the last `num_nonlocal` ones."""
    return list(range(num_blocks - num_nonlocal, num_blocks))


class ResNet(nn.Module):
    def __init__(
        self,
        block: str = "bottleneck",
        layers: tuple[int, ...] | list[int] = (3, 4, 6, 3),
        widths: tuple[int, ...] | list[int] = (64, 128, 256, 512),
        last_stride: int = 1,
        nl_layers: tuple[int, ...] | list[int] = (0, 2, 3, 0),
        nonlocal_factory: Callable[[int], nn.Module] | None = None,
    ):
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"unknown block {block!r}; expected one of {', '.join(BLOCKS)}")
        block_cls = BLOCKS[block]
        stem = widths[0]
        self.inplanes = stem
        self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        strides = (1, 2, 2, last_stride)
        stages = [
            self._make_layer(block_cls, w, n, s) for w, n, s in zip(widths, layers, strides, strict=True)
        ]
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.out_channels = widths[3] * block_cls.expansion
        factory = nonlocal_factory or (lambda c: DisentangledNonLocal(c))
        self.nl_after: list[list[int]] = [
            nonlocal_positions(n, m) for n, m in zip(layers, nl_layers, strict=True)
        ]
        self.nonlocal_blocks = nn.ModuleList(
            nn.ModuleList(factory(w * block_cls.expansion) for _ in positions)
            for w, positions in zip(widths, self.nl_after, strict=True)
        )
        self._init_weights()

    def _make_layer(self, block_cls: type, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block_cls.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block_cls.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block_cls.expansion),
            )
        modules = [block_cls(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block_cls.expansion
        modules += [block_cls(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*modules)

    def _init_weights(self) -> None:
        """Kaiming fan_out for the ResNet convs, BN 1/0; the non-local blocks keep their own init."""
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for m in stage.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage, positions, nl_blocks in zip(
            (self.layer1, self.layer2, self.layer3, self.layer4),
            self.nl_after,
            self.nonlocal_blocks,
            strict=True,
        ):
            nl_iter = iter(nl_blocks)
            for index, blk in enumerate(stage):
                x = blk(x)
                if index in positions:
                    x = next(nl_iter)(x)
        return x

    def load_torchvision_state(self, state: dict[str, torch.Tensor]) -> list[str]:
        """Load a torchvision ResNet state dict (its `fc` is dropped); return the keys left at init.

        Raises KeyError/RuntimeError (shape mismatch) for weights that do not fit this backbone.
        """
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        own = self.state_dict()
        unexpected = sorted(set(state) - set(own))
        if unexpected:
            raise KeyError(
                f"{len(unexpected)} weight(s) do not belong to this backbone, e.g. {unexpected[0]!r}"
            )
        for key, value in state.items():
            if own[key].shape != value.shape:
                raise RuntimeError(
                    f"weight {key!r} has shape {tuple(value.shape)}, expected {tuple(own[key].shape)}"
                )
        result = self.load_state_dict(state, strict=False)
        return list(result.missing_keys)
