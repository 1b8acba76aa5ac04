"""The network: a small ResNet (basic residual blocks) with a class-activation map as a second output.

``[N, 1, S, S]`` normalised pixels → stem (3×3 conv, ``width`` channels) → four residual stages
(``width``, 2×, 4×, 8× channels; strides 1, 2, 2, 2) → global average pooling → linear layer to the
class logits. Because the head is linear after average pooling, applying it at every position of the
last feature map gives the class-activation map (CAM, Zhou et al. 2016) whose spatial mean *is* the
logit: ``cam [N, C, S/8, S/8]`` is computed inside the exported graph, so ONNX Runtime produces the
saliency map with the scores and scoring needs no autograd.

The residual block is written here (the layout of torchvision's ``BasicBlock``: two 3×3 convolutions with
batch normalisation, a 1×1 projection on the shortcut when the shape changes) rather than imported:
the torchvision 0.28.0 wheel the registry offers is the CUDA build, whose compiled operators do not
load against the CPU build of torch 2.13.0 that the project pins, and importing it then fails.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["normalize_module", "resnet_factory"]


def resnet_factory(info: Mapping[str, Any], width: int = 16) -> Any:
    """The model for ``info`` (``channels``, ``classes``): outputs ``(logits [N, C], cam [N, C, h, w])``."""
    import torch
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    channels = int(info.get("channels", 1))
    classes = int(info.get("classes", 2))
    w = int(width)

    def stage(cin: int, cout: int, stride: int) -> nn.Module:
        down = None
        if stride != 1 or cin != cout:
            down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        return BasicBlock(cin, cout, stride=stride, downsample=down)

    class SmallResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w),
                                      nn.ReLU(inplace=True))
            self.layers = nn.Sequential(stage(w, w, 1), stage(w, 2 * w, 2), stage(2 * w, 4 * w, 2),
                                        stage(4 * w, 8 * w, 2))
            self.head = nn.Linear(8 * w, classes)

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            features = self.layers(self.stem(image))
            logits = self.head(features.mean(dim=(2, 3)))
            # The head as a 1×1 convolution: the same weights at every position (a plain Conv in ONNX).
            cam = torch.nn.functional.conv2d(features, self.head.weight[:, :, None, None], self.head.bias)
            return logits, cam

    return SmallResNet()


def normalize_module(mean: float, std: float) -> torch.nn.Module:
    """The in-graph preprocessing: ``uint8`` pixels → ``(x / 255 - mean) / std``, float32."""
    import torch
    from torch import nn

    class Normalize(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.tensor(float(mean), dtype=torch.float32))
            self.register_buffer("scale", torch.tensor(1.0 / float(std), dtype=torch.float32))

        def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"image": (image.float() * (1.0 / 255.0) - self.mean) * self.scale}

    return Normalize()


def grad_cam(model: torch.nn.Module, graph: torch.nn.Module | None, images: Any,
             targets: Sequence[int]) -> Any:
    """Grad-CAM (captum ``LayerGradCam`` on the last residual stage) for ``images`` (uint8
    ``[N, 1, S, S]``) and the class index per image; returns ``[N, S, S]`` in ``[0, 1]``."""
    import numpy as np
    import torch
    from captum.attr import LayerAttribution, LayerGradCam

    model = model.eval()
    x = torch.as_tensor(np.asarray(images))
    x = graph(image=x)["image"] if graph is not None else x.float() / 255.0

    def logits(image: torch.Tensor) -> torch.Tensor:
        return model(image)[0]

    cam = LayerGradCam(logits, model.layers[-1])
    attr = cam.attribute(x, target=torch.as_tensor(list(targets), dtype=torch.long), relu_attributions=True)
    up = LayerAttribution.interpolate(attr, tuple(x.shape[-2:]), interpolate_mode="bilinear")[:, 0]
    up = up.detach().numpy()
    peak = up.reshape(len(up), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(peak > 0, up / np.maximum(peak, 1e-12), 0.0)
