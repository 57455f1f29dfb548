"""Network architectures, all built from MONAI blocks and networks.

:func:`build` makes a network from a name and keyword arguments (the ``[model]`` table of a training
config); the same call rebuilds it when a shipped model is loaded.  Each architecture names the layer
that Grad-CAM should look at (:func:`cam_layer`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["ARCHITECTURES", "SmallCNN", "build", "cam_layer"]


class SmallCNN(nn.Module):
    """A small residual CNN for low-resolution classification (MedMNIST's 28x28).

    Feature stages are MONAI ``ResidualUnit`` blocks (the first keeps the resolution, the others
    halve it), followed by global average pooling, dropout and a linear layer.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 channels: tuple[int, ...] | list[int] = (16, 32, 64),
                 dropout: float = 0.2, spatial_dims: int = 2) -> None:
        from monai.networks.blocks import ResidualUnit

        super().__init__()
        blocks: list[nn.Module] = []
        c = in_channels
        for i, ch in enumerate(channels):
            blocks.append(ResidualUnit(spatial_dims, c, int(ch), strides=1 if i == 0 else 2,
                                       subunits=2, norm="batch", act="relu"))
            c = int(ch)
        self.features = nn.Sequential(*blocks)
        pool = nn.AdaptiveAvgPool2d(1) if spatial_dims == 2 else nn.AdaptiveAvgPool3d(1)
        self.pool = pool
        self.dropout = nn.Dropout(float(dropout))
        self.fc = nn.Linear(c, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.fc(self.dropout(x))


def _small_cnn(in_channels: int, out_channels: int, **kw: Any) -> nn.Module:
    return SmallCNN(in_channels, out_channels, **kw)


def _unet(in_channels: int, out_channels: int, channels: list[int] | tuple[int, ...] = (16, 32, 64, 128),
          num_res_units: int = 1, dropout: float = 0.0, **kw: Any) -> nn.Module:
    from monai.networks.nets import UNet

    channels = tuple(int(c) for c in channels)
    return UNet(spatial_dims=2, in_channels=in_channels, out_channels=out_channels,
                channels=channels, strides=(2,) * (len(channels) - 1),
                num_res_units=int(num_res_units), norm="batch", dropout=float(dropout), **kw)


def _basic_unet(in_channels: int, out_channels: int,
                features: list[int] | tuple[int, ...] = (16, 16, 32, 64, 128, 16), **kw: Any) -> nn.Module:
    from monai.networks.nets import BasicUNet

    return BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=out_channels,
                     features=tuple(int(f) for f in features), **kw)


def _resnet(in_channels: int, out_channels: int, layers: list[int] | tuple[int, ...] = (1, 1, 1, 1),
            block_inplanes: list[int] | tuple[int, ...] = (16, 32, 64, 128), **kw: Any) -> nn.Module:
    from monai.networks.nets import ResNet

    return ResNet(block="basic", layers=list(layers), block_inplanes=list(block_inplanes),
                  spatial_dims=2, n_input_channels=in_channels, num_classes=out_channels,
                  conv1_t_size=3, conv1_t_stride=1, no_max_pool=True, **kw)


ARCHITECTURES = {"small_cnn": _small_cnn, "unet": _unet, "basic_unet": _basic_unet,
                 "resnet": _resnet}

_CAM_LAYERS = {"small_cnn": "features", "resnet": "layer4"}


def build(arch: str, in_channels: int, out_channels: int, **kw: Any) -> nn.Module:
    """A network by name (see :data:`ARCHITECTURES`) with the given channel counts."""
    if arch not in ARCHITECTURES:
        msg = f"unknown architecture {arch!r}; choose one of {', '.join(sorted(ARCHITECTURES))}"
        raise ValueError(msg)
    return ARCHITECTURES[arch](int(in_channels), int(out_channels), **kw)


def cam_layer(arch: str) -> str | None:
    """The layer whose activations Grad-CAM uses for a classification architecture (None: none)."""
    return _CAM_LAYERS.get(arch)
