"""What the read-back guard costs per result: `readback.check_image_file` (a header read) on a
written 12-megapixel image, per format, next to the time to encode that image.

    python benchmarks/readback.py [--repeat 50]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from harmonize_cli.readback import check_image_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:3000, 0:4000] / 4000.0
    photo = np.clip(np.stack([0.2 + 0.6 * xx, 0.3 + 0.4 * yy, 0.5 - 0.3 * xx], axis=2)
                    + 0.05 * rng.standard_normal((3000, 4000, 3)), 0, 1)
    image = Image.fromarray((photo * 255).astype(np.uint8))
    with tempfile.TemporaryDirectory() as folder:
        for fmt, suffix in (("JPEG", ".jpg"), ("PNG", ".png"), ("TIFF", ".tif"), ("WEBP", ".webp")):
            started = time.perf_counter()
            buffer = io.BytesIO()
            image.save(buffer, format=fmt)
            encode_ms = 1000 * (time.perf_counter() - started)
            path = Path(folder) / f"result{suffix}"
            path.write_bytes(buffer.getvalue())
            started = time.perf_counter()
            for _ in range(args.repeat):
                check_image_file(path, (4000, 3000), fmt)
            check_ms = 1000 * (time.perf_counter() - started) / args.repeat
            print(f"{fmt:5s} encode {encode_ms:8.1f} ms   read back {check_ms:6.2f} ms "
                  f"({100 * check_ms / encode_ms:.2f} % of the encode)")


if __name__ == "__main__":
    main()
