"""The small ViT that predicts PCT-Net's parameter map (``ViT_pct``).

Image and mask (4 channels) are cut into 4 x 4 patches, embedded to 256 dimensions, run through a
9-layer transformer encoder (2 heads, feed-forward 512, GELU, post-norm, dropout 0.1 as in PyTorch's
defaults) and turned back into a full-size map by a 4 x 4 stride-4 transposed convolution and a
tanh. There is no positional encoding (the authors' design). Module names follow the authors'
state-dict layout (``patch_to_embedding.1``, ``transformer_enc.layers.N``, ``dec.0``).
"""

from __future__ import annotations

from torch import nn


class PatchesToTokens(nn.Module):
    """N x C x (h p) x (w p) -> N x (h w) x (p p C): row-major patches, channels last inside a patch."""

    def __init__(self, patch_size: int):
        super().__init__()
        self.patch_size = patch_size

    def forward(self, x):
        batch, channels, height, width = x.shape
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(f"input size {height} x {width} is not a multiple of the patch size {p}")
        x = x.reshape(batch, channels, height // p, p, width // p, p)
        return x.permute(0, 2, 4, 3, 5, 1).reshape(batch, (height // p) * (width // p), p * p * channels)

    def extra_repr(self):
        return f"patch_size={self.patch_size}"


class ViTParameterEncoder(nn.Module):
    """``forward(image_and_mask)`` -> N x output_channels x H x W in (-1, 1)."""

    def __init__(self, output_channels: int, patch_size: int = 4, heads: int = 2, layers: int = 9,
                 input_channels: int = 3, feedforward_factor: int = 2, activation: str = "gelu",
                 dim: int = 256, dropout: float = 0.1):
        super().__init__()
        self.patch_size = patch_size
        self.patch_to_embedding = nn.Sequential(
            PatchesToTokens(patch_size),
            nn.Linear(patch_size * patch_size * (input_channels + 1), dim),
        )
        layer = nn.TransformerEncoderLayer(dim, nhead=heads, dim_feedforward=dim * feedforward_factor,
                                           dropout=dropout, activation=activation)
        self.transformer_enc = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
        self.dec = nn.Sequential(
            nn.ConvTranspose2d(dim, output_channels, kernel_size=patch_size, stride=patch_size, padding=0),
            nn.Tanh(),
        )

    def forward(self, x, backbone_features=None):
        rows, cols = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        tokens = self.patch_to_embedding(x)  # N x L x dim
        content = self.transformer_enc(tokens.transpose(0, 1))  # sequence-first, as the reference
        grid = content.permute(1, 2, 0).reshape(x.shape[0], -1, rows, cols)
        return self.dec(grid)
