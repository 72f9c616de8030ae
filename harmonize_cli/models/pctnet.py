"""PCT-Net: full-resolution harmonization by pixel-wise colour transforms (Guerreiro, Nakazawa,
Stenger, CVPR 2023; the authors' code is rakutentech/PCT-Net-Image-Harmonization, MPL-2.0).

A network sees the 256 x 256 composite and its mask and predicts a map of 12 parameters per pixel
(an affine RGB transform). The map is applied to the low-resolution image, and, upsampled
bicubically, to the full-resolution one (:mod:`.pct_transform`). The result is blended with the
input by the mask (``use_attn=False``, the ViT model) or by an attention map the network also
predicts (``use_attn=True``, the CNN model built on the iS2AM U-Net).

Reference configurations (constructor arguments, see :data:`PCT_CONFIGS`): ``CNN_pct`` (U-Net
encoder/decoder, ImageNet input normalisation) and ``ViT_pct`` (:mod:`.vit`, inputs in [0, 1]).
``state_dict()`` keys, order and shapes are the authors', so their released checkpoints load
unchanged.

``forward(image, mask)`` returns ``{"images", "params", "attention"}``; with ``image_fullres`` /
``mask_fullres`` (tensors, or lists of 1 x C x H x W tensors of different sizes, as in training) it
also returns ``"images_fullres"`` and ``"params_fullres"``, computed in one shot like the reference.
:meth:`PCTNet.harmonize_full_resolution` is the memory-bounded inference path (strips in a box).
"""

from __future__ import annotations

from functools import partial
from typing import Mapping, Optional, Sequence

import torch
from torch import nn

from .pct_transform import affine_color_transform, apply_full_resolution, upsample_params
from .ssam import SpatialSeparatedAttention, UNetDecoder, UNetEncoder
from .vit import ViTParameterEncoder

from ..choices import IDENTITY_NORMALIZATION, IMAGENET_NORMALIZATION

PCT_CONFIGS = {
    "CNN_pct": {
        "backbone_type": "ssam", "depth": 4, "ch": 32, "image_fusion": True, "attention_mid_k": 0.5,
        "batchnorm_from": 2, "attend_from": 2, "input_normalization": IMAGENET_NORMALIZATION,
        "dim": 3, "transform_type": "linear", "affine": True, "clamp": True, "color_space": "RGB",
        "use_attn": True,
    },
    "ViT_pct": {
        "backbone_type": "ViT", "input_normalization": IDENTITY_NORMALIZATION,
        "dim": 3, "transform_type": "linear", "affine": True, "clamp": True, "color_space": "RGB",
        "use_attn": False,
    },
}


class UNetFeatureDecoder(UNetDecoder):
    """The iS2AM U-Net decoder returning (last features, attention map) instead of an image, as the
    reference's ``UNetDecoderUpsample``; ``to_rgb`` exists (in the checkpoints) but is unused."""

    def forward(self, encoder_outputs, image, mask):
        output = encoder_outputs[0]
        for block, skip in zip(self.up_blocks, encoder_outputs[1:]):
            output = block(output, skip, mask)
        return output, torch.sigmoid(3.0 * self.conv_attention(output))


def _check_supported(backbone_type, transform_type, dim, color_space, use_attn, image_fusion):
    if backbone_type not in ("ssam", "ViT"):
        raise ValueError(f"PCT-Net backbone_type {backbone_type!r} is not implemented; use 'ssam' or 'ViT'")
    if transform_type != "linear" or dim != 3:
        raise ValueError(f"PCT-Net transform {transform_type!r} (dim {dim}) is not implemented; "
                         "only the released 'linear' RGB transform (dim 3) is")
    if color_space != "RGB":
        raise ValueError(f"PCT-Net color_space {color_space!r} is not implemented; only 'RGB' is")
    if backbone_type == "ssam" and not image_fusion:
        raise ValueError("the U-Net PCT-Net predicts its attention map with image_fusion=True (as released)")
    if use_attn and backbone_type != "ssam":
        raise ValueError("use_attn needs the U-Net backbone ('ssam'); the ViT blends with the mask")


class PCTNet(nn.Module):
    """PCT-Net with the reference constructor arguments (``PCTNet(**PCT_CONFIGS["ViT_pct"])``)."""

    def __init__(self, backbone_type="idih", input_normalization=None, dim=3, transform_type="linear",
                 affine=True, clamp=True, color_space="RGB", use_attn=True, depth=4,
                 norm_layer=nn.BatchNorm2d, batchnorm_from=0, attend_from=-1, image_fusion=False,
                 ch=64, max_channels=512, attention_mid_k=2.0, backbone_from=-1, backbone_channels=None,
                 backbone_mode=""):
        super().__init__()
        _check_supported(backbone_type, transform_type, dim, color_space, use_attn, image_fusion)
        normalization = input_normalization or IMAGENET_NORMALIZATION
        self.input_normalization = {"mean": tuple(float(v) for v in normalization["mean"]),
                                    "std": tuple(float(v) for v in normalization["std"])}
        self.backbone_type = backbone_type
        self.transform_type = transform_type
        self.affine = bool(affine)
        self.clamp = bool(clamp)
        self.use_attn = bool(use_attn)
        self.depth = depth
        self.out_dim = 9 + (3 if self.affine else 0)

        if backbone_type == "ssam":
            self.encoder = UNetEncoder(depth, ch, norm_layer, batchnorm_from, max_channels,
                                       backbone_from, backbone_channels, backbone_mode)
            self.decoder = UNetFeatureDecoder(
                depth, self.encoder.block_channels, norm_layer,
                attention_layer=partial(SpatialSeparatedAttention, mid_k=attention_mid_k),
                attend_from=attend_from, image_fusion=image_fusion,
            )
            features = self.encoder.block_channels[0]
        else:
            self.encoder = ViTParameterEncoder(output_channels=self.out_dim)
            self.decoder = None
            features = self.out_dim
        self.get_params = nn.Conv2d(features, self.out_dim, kernel_size=1)

    @property
    def size_divisor(self) -> int:
        """Low-resolution inputs must have sides divisible by this."""
        return 2 ** (self.depth - 1) if self.backbone_type == "ssam" else self.encoder.patch_size

    def _transform(self, image, params):
        norm = self.input_normalization
        return affine_color_transform(image, params, norm["mean"], norm["std"],
                                      clamp=self.clamp, affine=self.affine)

    def predict_params(self, image, mask, backbone_features=None):
        """(parameter map, blending map) at the input's resolution."""
        features = self.encoder(torch.cat((image, mask), dim=1), backbone_features)
        if self.decoder is not None:
            features, attention = self.decoder(features, image, mask)
        else:
            attention = mask
        return self.get_params(features), attention

    def forward(self, image, mask, image_fullres=None, mask_fullres=None, backbone_features=None):
        params, attention = self.predict_params(image, mask, backbone_features)
        output = self._transform(image, params)
        blend = attention if self.use_attn else mask
        outputs = {"images": output * blend + image * (1 - blend), "params": params, "attention": attention}
        if image_fullres is not None:
            outputs.update(self._full_resolution(params, attention, image_fullres, mask_fullres))
        return outputs

    def _full_resolution(self, params, attention, image_fullres, mask_fullres):
        if torch.is_tensor(image_fullres):
            groups = [(slice(None), image_fullres, mask_fullres)]
        else:
            masks = mask_fullres if mask_fullres is not None else [None] * len(image_fullres)
            groups = [(slice(i, i + 1), image, mask) for i, (image, mask) in enumerate(zip(image_fullres, masks))]
        images, maps = [], []
        for index, image, mask in groups:
            size = image.shape[-2:]
            params_full = upsample_params(params[index], size)
            output = self._transform(image, params_full)
            if self.use_attn:
                blend = upsample_params(attention[index], size)
            elif mask is None:
                raise ValueError("PCT-Net without attention needs mask_fullres with image_fullres")
            else:
                blend = mask
            images.append(output * blend + image * (1 - blend))
            maps.append(params_full)
        if torch.is_tensor(image_fullres):
            return {"images_fullres": images[0], "params_fullres": maps[0]}
        return {"images_fullres": images, "params_fullres": maps}

    @torch.no_grad()
    def harmonize_full_resolution(self, image, mask, image_fullres, mask_fullres=None,
                                  bbox: Optional[Sequence[int]] = None, strip_rows: int = 256,
                                  out: Optional[torch.Tensor] = None):
        """Inference at any size with bounded memory: runs the network on the low-resolution view
        (``image``/``mask``), then applies the upsampled map to ``image_fullres`` (1 x 3 x H x W,
        normalised) in strips of ``strip_rows`` rows inside ``bbox`` (y0, y1, x0, x1; default: the
        box of ``mask_fullres > 0``). Returns ``(low-resolution outputs dict, full-res image)``;
        outside the box the full-res image is the input (composite with the mask afterwards)."""
        outputs = self.forward(image, mask)
        if bbox is None and mask_fullres is not None:
            bbox = _mask_bbox(mask_fullres)
            if bbox is None:  # empty mask: nothing to harmonize
                return outputs, image_fullres.clone() if out is None else out.copy_(image_fullres)
        norm = self.input_normalization
        full = apply_full_resolution(
            outputs["params"], image_fullres, mask_fullres, bbox, mean=norm["mean"], std=norm["std"],
            clamp=self.clamp, affine=self.affine,
            attention_lowres=outputs["attention"] if self.use_attn else None,
            strip_rows=strip_rows, out=out,
        )
        return outputs, full


def _mask_bbox(mask: torch.Tensor):
    """(y0, y1, x0, x1) of ``mask > 0`` over a 1 x 1 x H x W tensor; None when empty."""
    plane = mask[0, 0] > 0
    rows = torch.nonzero(plane.any(dim=1)).flatten()
    if rows.numel() == 0:
        return None
    cols = torch.nonzero(plane.any(dim=0)).flatten()
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def build_pctnet(name: str, **overrides) -> PCTNet:
    """A PCT-Net by reference configuration name (``CNN_pct``, ``ViT_pct``)."""
    if name not in PCT_CONFIGS:
        raise ValueError(f"unknown PCT-Net configuration {name!r}; expected one of {sorted(PCT_CONFIGS)}")
    params = dict(PCT_CONFIGS[name])
    params.update(overrides)
    return PCTNet(**params)


def load_reference_config(entry: Mapping) -> PCTNet:
    """A PCT-Net from a layout entry's ``params`` (e.g. ../shared/parity/pctnet_state_dicts.json)."""
    return PCTNet(**dict(entry["params"]))
