"""Throughput of the training data pipeline: packed HDF5 vs. the folder tree.

Builds a synthetic dataset in iHarmony4 layout with realistic image sizes (half 640x480 like
HCOCO, half 1024x768 like HFlickr / resized HAdobe5k; photo-like JPEGs), packs it with
``harmonize prepare``'s API (``--storage pixels`` and ``encoded``), and measures samples/s of
the training pipeline (read/decode, RandomResizedCrop 256 + flip, normalise, batches of 16
through a torch DataLoader) from each source at 1 and 2 workers, and in the main process
(0 workers: the pipeline alone, without the DataLoader's inter-process transfer).

    python benchmarks/data_throughput.py                      # 192 composites; 0 (in-process), 1, 2 workers
    python benchmarks/data_throughput.py --samples 400 --workers 1,2,4 --batches 20 --repeat 5

Figures are with a warm page cache (the files were just written); see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from harmonize_cli.data import HarmonizationDataset, train_transform  # noqa: E402
from harmonize_cli.data.pack import pack_dataset  # noqa: E402

SUBSETS = {"HCOCO": (480, 640), "HFlickr": (768, 1024)}


# ---------------------------------------------------------------------------- synthetic data
def _photo(rng, height, width) -> np.ndarray:
    """Photo-like content: smooth shading, textures at several scales, sensor noise."""
    image = np.zeros((height, width, 3), np.float32)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    for c in range(3):
        image[..., c] = rng.uniform(60, 190) + 40 * np.sin(x / rng.uniform(60, 200) + rng.uniform(0, 6)) * np.cos(
            y / rng.uniform(60, 200)
        )
    for cell, amplitude in ((48, 30.0), (12, 14.0), (3, 6.0)):
        small = rng.normal(0, amplitude, size=(height // cell + 2, width // cell + 2, 3)).astype(np.float32)
        layer = np.asarray(
            Image.fromarray(((small / (4 * amplitude) + 0.5).clip(0, 1) * 255).astype(np.uint8)).resize(
                (width + 2 * cell, height + 2 * cell), Image.Resampling.BICUBIC
            ),
            dtype=np.float32,
        )[cell : cell + height, cell : cell + width]
        image += (layer / 255.0 - 0.5) * 4 * amplitude
    image += rng.normal(0, 2.0, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _mask(rng, height, width) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
    ry, rx = rng.uniform(0.1, 0.3) * height, rng.uniform(0.1, 0.3) * width
    return np.where(((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1, 255, 0).astype(np.uint8)


def build_dataset(root: Path, samples: int, seed: int = 0) -> dict:
    """``samples`` composites split over the subsets (two per real image), 80 % train."""
    rng = np.random.default_rng(seed)
    stats = {"jpeg_bytes": 0, "jpegs": 0}
    per_subset = samples // len(SUBSETS)
    for index, (subset, (height, width)) in enumerate(SUBSETS.items()):
        folder = root / subset
        for sub in ("composite_images", "masks", "real_images"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        names = []
        prefix = subset[1].lower()
        for j in range(per_subset):
            real_name = f"{prefix}{1000 + j // 2}"
            if j % 2 == 0:
                real = _photo(rng, height, width)
                buffer = io.BytesIO()
                Image.fromarray(real).save(buffer, "JPEG", quality=95)
                (folder / "real_images" / f"{real_name}.jpg").write_bytes(buffer.getvalue())
                stats["jpeg_bytes"] += len(buffer.getvalue())
                stats["jpegs"] += 1
            mask = _mask(rng, height, width)
            mask_name = f"{real_name}_{j}"
            Image.fromarray(mask).save(folder / "masks" / f"{mask_name}.png")
            shifted = np.clip(real.astype(np.float32) * rng.uniform(0.7, 1.3, 3) + rng.uniform(-30, 30, 3), 0, 255)
            composite = np.where(mask[..., None] > 0, shifted.astype(np.uint8), real)
            buffer = io.BytesIO()
            Image.fromarray(composite).save(buffer, "JPEG", quality=95)
            (folder / "composite_images" / f"{mask_name}_1.jpg").write_bytes(buffer.getvalue())
            stats["jpeg_bytes"] += len(buffer.getvalue())
            stats["jpegs"] += 1
            names.append(f"{mask_name}_1.jpg")
        cut = int(len(names) * 0.8)
        (folder / f"{subset}_train.txt").write_text("\n".join(names[:cut]) + "\n")
        (folder / f"{subset}_test.txt").write_text("\n".join(names[cut:]) + "\n")
    return stats


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.suffix in (".jpg", ".png"))


# ---------------------------------------------------------------------------- measurement
def measure(
    source, workers: int, batches: int, batch_size: int, crop: int, repeat: int = 3, warmup: int = 2, uint8=False
) -> float:
    """Samples/s of the training loader: the best of ``repeat`` rounds of ``batches`` batches.

    The best round is reported (as ``timeit`` does) because other load on the machine only
    ever slows a round down. Worker start-up and the first batches are not timed.
    """
    dataset = HarmonizationDataset(source, "train", transform=train_transform(crop), uint8_images=uint8)
    generator = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    if workers == 0:
        torch.set_num_threads(1)  # what a DataLoader worker uses
    try:
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            num_workers=workers,
            drop_last=True,
            generator=generator,
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
        )

        def batches_forever():
            while True:
                yield from loader

        stream = batches_forever()
        for _ in range(warmup * max(1, workers)):
            next(stream)
        best = 0.0
        for _ in range(repeat):
            start = time.perf_counter()
            counted = sum(next(stream)["image"].shape[0] for _ in range(batches))
            best = max(best, counted / (time.perf_counter() - start))
        del stream, loader
    finally:
        torch.set_num_threads(threads)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=192, help="composites in the synthetic dataset (default 192)")
    parser.add_argument(
        "--workers", default="0,1,2", help="DataLoader worker counts (0: in the main process, one thread; default 0,1,2)"
    )
    parser.add_argument("--batches", type=int, default=10, help="timed batches per round (default 10)")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds per measurement; the best counts (default 3)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--storages", default="pixels,encoded", help="HDF5 storages to compare (default pixels,encoded)")
    parser.add_argument(
        "--uint8",
        action="store_true",
        help="also measure hdf5-pixels with uint8_images=True (normalisation left to the GPU)",
    )
    parser.add_argument("--dir", type=Path, default=None, help="work folder to keep (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args(argv)

    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    storages = [s for s in args.storages.split(",") if s.strip()]
    work = args.dir or Path(tempfile.mkdtemp(prefix="harmonize-bench-"))
    root = work / "iHarmony4-synthetic"
    results = {
        "command": "python benchmarks/data_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "load_average_at_start": os.getloadavg()[0],
        "samples": args.samples,
        "rates": {},
    }
    try:
        if not root.exists():
            t = time.perf_counter()
            stats = build_dataset(root, args.samples)
            print(f"built {args.samples} composites in {time.perf_counter() - t:.1f} s, "
                  f"mean JPEG {stats['jpeg_bytes'] / stats['jpegs'] / 1024:.0f} KB")
        folder_bytes = tree_size(root)
        results["sizes"] = {"folder": folder_bytes}
        print(f"folder tree: {folder_bytes / 2**20:.1f} MB")
        sources = {"folder": root}
        for storage in storages:
            out = work / f"packed-{storage}.h5"
            t = time.perf_counter()
            report = pack_dataset(root, output=out, storage=storage, workers=min(8, os.cpu_count() or 1), force=True)
            seconds = time.perf_counter() - t
            results["sizes"][f"hdf5-{storage}"] = report.bytes_on_disk
            results.setdefault("pack_seconds", {})[storage] = round(seconds, 2)
            print(f"packed {storage}: {report.bytes_on_disk / 2**20:.1f} MB "
                  f"({report.bytes_on_disk / folder_bytes:.2f}x the folder) in {seconds:.1f} s")
            sources[f"hdf5-{storage}"] = out

        if "hdf5-pixels" in sources and args.uint8:
            sources["hdf5-pixels, uint8 batches"] = sources["hdf5-pixels"]
        for name, source in sources.items():
            for count in workers:
                uint8 = name.endswith("uint8 batches")
                rate = measure(source, count, args.batches, args.batch_size, args.crop, args.repeat, uint8=uint8)
                results["rates"].setdefault(name, {})[count] = rate
                print(f"{name:>14} workers={count}: {rate:7.1f} samples/s ({rate / max(1, count):6.1f} per worker)")
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)

    print()
    header = "| source | size on disk | " + " | ".join(
        "in-process" if w == 0 else f"{w} worker{'s' if w != 1 else ''}" for w in workers
    ) + " |"
    print(header)
    print("|" + " --- |" * (2 + len(workers)))
    for name, by_workers in results["rates"].items():
        size = results["sizes"].get(name.split(",")[0], 0) / 2**20
        cells = " | ".join(f"{by_workers[w]:.0f}" for w in workers)
        print(f"| {name} | {size:.0f} MB | {cells} |")
    folder = results["rates"].get("folder", {})
    for name, by_workers in results["rates"].items():
        if name == "folder":
            continue
        ratios = ", ".join(f"{by_workers[w] / folder[w]:.1f}x at {w}" for w in workers if folder.get(w))
        print(f"{name} vs folder: {ratios}")
    results["load_average_at_end"] = os.getloadavg()[0]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
