"""UVC's Lab colour auto-encoder (METHODS.md §1.7): architecture only.

UVC reconstructs the target frame's colour as ``D(E(I1) · A)``: the reference frame's colour
features are transported by the affinity A and decoded (METHODS.md §1.6). E and D are trained
first to reconstruct Lab images, then frozen. Both work on UVC's [-1, 1] Lab
(`colour.lab_to_uvc_normalised`). VGG-style, every 3x3 conv reflect-padded.
"""

from __future__ import annotations

from torch import Tensor, nn

AE_STRIDE = 8
AE_CHANNELS = 256


def _conv(cin: int, cout: int, kernel: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, padding=kernel // 2, padding_mode="reflect")


def _conv_relu(cin: int, cout: int, kernel: int = 3) -> list[nn.Module]:
    return [_conv(cin, cout, kernel), nn.ReLU(inplace=True)]


def _pool() -> nn.MaxPool2d:
    # ceil_mode: the feature grid is ceil(H/8) x ceil(W/8), the same as the matching ResNet's,
    # so colour features and affinities line up for any frame size.
    return nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)


class LabEncoder(nn.Sequential):
    """UVC ``encoder3(reduce=True)``: lab_n (B, 3, H, W) in [-1, 1] -> (B, 256, ceil(H/8), ceil(W/8))."""

    def __init__(self) -> None:
        super().__init__(
            _conv(3, 3, 1),  # a learned colour transform before the first 3x3 conv
            *_conv_relu(3, 64),
            *_conv_relu(64, 64),
            _pool(),
            *_conv_relu(64, 128),
            *_conv_relu(128, 128),
            _pool(),
            *_conv_relu(128, 256),
            _pool(),  # "reduce": one more halving, to the matching encoder's stride 8
            *_conv_relu(256, AE_CHANNELS, kernel=1),
        )


class LabDecoder(nn.Sequential):
    """UVC ``decoder3(reduce=True)``: (B, 256, h, w) -> lab_n (B, 3, 8h, 8w) in [-1, 1] (tanh)."""

    def __init__(self) -> None:
        super().__init__(
            nn.Upsample(scale_factor=2, mode="nearest"),
            *_conv_relu(AE_CHANNELS, 256, kernel=1),
            *_conv_relu(256, 128),
            nn.Upsample(scale_factor=2, mode="nearest"),
            *_conv_relu(128, 128),
            *_conv_relu(128, 64),
            nn.Upsample(scale_factor=2, mode="nearest"),
            *_conv_relu(64, 64),
            _conv(64, 3, 3),
            nn.Tanh(),
        )


class LabAutoencoder(nn.Module):
    """Encoder + decoder, kept as separate submodules so UVC can freeze and call them apart.

    ``forward``: lab_n (B, 3, H, W) in [-1, 1] -> reconstruction (B, 3, 8·ceil(H/8), 8·ceil(W/8));
    crop to (H, W) when H or W is not a multiple of 8.
    """

    stride = AE_STRIDE
    channels = AE_CHANNELS

    def __init__(self) -> None:
        super().__init__()
        self.encoder = LabEncoder()
        self.decoder = LabDecoder()

    def encode(self, lab_n: Tensor) -> Tensor:
        """lab_n: (B, 3, H, W) in [-1, 1] -> colour features (B, 256, ceil(H/8), ceil(W/8))."""
        return self.encoder(lab_n)

    def decode(self, features: Tensor) -> Tensor:
        """features: (B, 256, h, w) -> lab_n (B, 3, 8h, 8w) in [-1, 1]."""
        return self.decoder(features)

    def forward(self, lab_n: Tensor) -> Tensor:
        return self.decode(self.encode(lab_n))
