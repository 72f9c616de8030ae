"""The reference implementation's loops, written with this project's dependencies (the
reference side of ``benchmarks/vs_reference.py``, which runs each as a fresh process).

    python benchmarks/reference_loops.py apply ARCH WEIGHTS COMPOSITES MASKS OUT [--threads N]
    python benchmarks/reference_loops.py eval ARCH WEIGHTS DATA OUT.json [--threads N]

``apply``: decode with Pillow, resize the whole photo to 256 (OpenCV ``INTER_LINEAR`` semantics),
predict at batch 1 with the plain network, resize the whole prediction back, blend nothing, encode
JPEG quality 85, one file after another. ``eval``: the Fixed256 evaluation loop at batch 1 with
decoding in the loop. ``--threads``: torch's intra-op threads (0: its default, all cores).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's package


def _plain_network(arch: str, weights: str):
    import torch

    from harmonize_cli import zoo

    network = zoo.create_model(arch, init=False)
    network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return network.eval()


def _reference_predict(network, image_255, mask):
    """The reference Predictor: normalise, forward, de-normalise, clamp (1 x 3 x h x w, 0..255)."""
    import torch

    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        output = network((image_255 / 255.0 - mean) / std, mask)
    return ((output * std + mean) * 255.0).clamp(0, 255)


def _set_threads(threads: int) -> None:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)


def reference_apply(arch: str, weights: str, composites: str, masks: str, out: str, threads: int = 0) -> None:
    """The reference's apply loop, one photo after another (see the module doc); ``threads``:
    torch's intra-op threads (0: its default, all cores)."""
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from harmonize_cli.data.transforms import resize_linear, resize_linear_uint8

    _set_threads(threads)
    network = _plain_network(arch, weights)
    Path(out).mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(composites).glob("*.jpg")):
        image = np.asarray(Image.open(path).convert("RGB"))
        mask = np.asarray(Image.open(Path(masks) / f"{path.stem}.png").convert("L")).astype(np.float32) / 255.0
        small = resize_linear_uint8(image, (256, 256)).round()[None].contiguous()  # N x C x H x W, as ToTensor
        small_mask = resize_linear(mask, (256, 256))[None]
        prediction = _reference_predict(network, small, small_mask).round().to(torch.uint8)
        full = F.interpolate(prediction.contiguous(memory_format=torch.channels_last), size=image.shape[:2],
                             mode="bilinear", align_corners=False)  # uint8 channels-last: torch's fast kernel
        result = full[0].permute(1, 2, 0).contiguous().numpy()
        Image.fromarray(result).save(Path(out) / path.name, quality=85)


def reference_eval(arch: str, weights: str, data: str, out: str, threads: int = 0) -> None:
    """The reference's evaluation loop at Fixed256 (batch 1, decoding in the loop)."""
    from PIL import Image

    from harmonize_cli.data.transforms import resize_linear, resize_linear_uint8

    _set_threads(threads)
    network = _plain_network(arch, weights)
    sums, count = {"MSE": 0.0, "fMSE": 0.0, "PSNR": 0.0}, 0
    for list_file in sorted(Path(data).glob("*/*_test.txt")):
        subset = list_file.parent
        for name in list_file.read_text().split():
            stem = Path(name).stem
            real_name = stem.split("_")[0] + ".jpg"
            mask_name = stem.rsplit("_", 1)[0] + ".png"
            image = np.asarray(Image.open(subset / "composite_images" / name).convert("RGB"))
            real = np.asarray(Image.open(subset / "real_images" / real_name).convert("RGB"))
            mask = np.asarray(Image.open(subset / "masks" / mask_name))
            mask = (mask[..., 0] if mask.ndim == 3 else mask).astype(np.float32) / 255.0
            small = resize_linear_uint8(image, (256, 256)).round()[None].contiguous()
            target = resize_linear_uint8(real, (256, 256)).round()[None].contiguous()
            small_mask = resize_linear(mask, (256, 256))[None]
            prediction = _reference_predict(network, small, small_mask)
            error = (prediction - target) ** 2
            mse = error.mean().item()
            fmse = (error * small_mask).sum().item() / (3 * small_mask.sum().item() + 1e-6)
            psnr = 10 * np.log10(target.max().item() ** 2 / (mse + 1e-6))
            for key, value in (("MSE", mse), ("fMSE", fmse), ("PSNR", psnr)):
                sums[key] += value
            count += 1
    Path(out).write_text(json.dumps({key: value / max(count, 1) for key, value in sums.items()} | {"N": count}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("loop", choices=("apply", "eval"))
    parser.add_argument("arguments", nargs="+")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.loop == "apply":
        reference_apply(*args.arguments, threads=args.threads)
    else:
        reference_eval(*args.arguments, threads=args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
