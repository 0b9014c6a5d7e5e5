"""The default networks, described by JSON specs so saved models can be rebuilt on load.

Every BNN method uses the same network per dataset (so their result.json files compare
directly): MLP 40-256-256-10 for mnist1d, 64-256-256-10 for digits, one hidden layer of 50
units for the UCI regression sets, a small 1-D CNN for mnist1d (`model="cnn"`), a small 2-D
CNN for images, and the CIFAR variant of ResNet-18. Regression networks output two columns,
the mean and an unconstrained variance (see `varbayes.nn.heads`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from varbayes.errors import VarbayesError

MODELS = ("mlp", "cnn", "resnet18")


def network_spec(
    dataset: str,
    task: str,
    input_shape: tuple[int, ...],
    n_classes: int | None,
    model: str = "mlp",
    dropout: float = 0.0,
    image_shape: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """The JSON description of the default `model` for a dataset."""
    out = n_classes if task == "classification" else 2
    if out is None:
        raise VarbayesError("a classification dataset must give its number of classes")
    n_in = math.prod(input_shape)
    if model == "mlp":
        hidden = [50] if task == "regression" else [256, 256]
        return {"type": "mlp", "in": n_in, "hidden": hidden, "out": out, "dropout": dropout}
    if model == "cnn":
        shape = tuple(image_shape or input_shape)
        if len(shape) == 1:
            return {"type": "cnn1d", "length": shape[0], "width": 64, "out": out,
                    "dropout": dropout}
        if len(shape) == 2:  # a 1-channel sequence stored as (channels, length)
            return {"type": "cnn1d", "length": shape[-1], "channels": shape[0], "width": 64,
                    "out": out, "dropout": dropout}
        return {"type": "cnn2d", "shape": list(shape), "width": 32, "out": out,
                "dropout": dropout}
    if model == "resnet18":
        shape = tuple(image_shape or input_shape)
        if len(shape) != 3:
            raise VarbayesError(f"model resnet18 needs image inputs (C, H, W); {dataset} has "
                                f"shape {shape}")
        return {"type": "resnet18", "channels": shape[0], "shape": list(shape), "out": out}
    raise VarbayesError(f"unknown model {model!r}; valid: {', '.join(MODELS)}")


def build_network(spec: dict[str, Any]) -> nn.Module:
    """A freshly initialised network for a spec from `network_spec`."""
    kind = spec.get("type")
    if kind == "mlp":
        return MLP(spec["in"], spec["hidden"], spec["out"], spec.get("dropout", 0.0))
    if kind == "cnn1d":
        return CNN1d(spec["length"], spec["width"], spec["out"], spec.get("dropout", 0.0),
                     spec.get("channels", 1))
    if kind == "cnn2d":
        return CNN2d(tuple(spec["shape"]), spec["width"], spec["out"], spec.get("dropout", 0.0))
    if kind == "resnet18":
        return ResNet18(spec["channels"], spec["out"])
    raise VarbayesError(f"unknown network type {kind!r} in model file")


class MLP(nn.Module):
    """Fully connected ReLU network; optional dropout before every hidden-to-next layer."""

    def __init__(self, n_in: int, hidden: list[int], n_out: int, dropout: float = 0.0) -> None:
        super().__init__()
        sizes = [n_in, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(sizes[-1], n_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNN1d(nn.Module):
    """Three 1-D convolutions (the last two with stride 2) and a linear classifier."""

    def __init__(self, length: int, width: int, n_out: int, dropout: float = 0.0,
                 channels: int = 1) -> None:
        super().__init__()
        self.channels = channels
        self.features = nn.Sequential(
            nn.Conv1d(channels, width, 5, padding=2), nn.ReLU(),
            nn.Conv1d(width, width, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv1d(width, width, 5, stride=2, padding=2), nn.ReLU(),
        )
        n_flat = width * (((length + 1) // 2 + 1) // 2)
        head: list[nn.Module] = [nn.Flatten()]
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(n_flat, n_out))
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(len(x), self.channels, -1)
        return self.head(self.features(x))


class CNN2d(nn.Module):
    """Two conv-ReLU-maxpool stages and a two-layer classifier, for small images."""

    def __init__(self, shape: tuple[int, ...], width: int, n_out: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        c, h, w = shape
        self.shape = (c, h, w)
        self.features = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        n_flat = 2 * width * (h // 4) * (w // 4)
        head: list[nn.Module] = [nn.Flatten(), nn.Linear(n_flat, 128), nn.ReLU()]
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(128, n_out))
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.reshape(len(x), *self.shape)))


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18, CIFAR variant: 3x3 stem without max-pool, four stages of two basic blocks."""

    def __init__(self, channels: int = 3, n_out: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, 64, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(64), nn.ReLU())
        blocks, c_in = [], 64
        for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [_BasicBlock(c_in, c_out, stride), _BasicBlock(c_out, c_out, 1)]
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(512, n_out)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(len(x), self.channels, *x.shape[-2:]) if x.dim() == 4 else x
        h = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))
