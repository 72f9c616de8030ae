"""Peak memory and time of each command fed a memory bomb (issue 22, items 6-8).

    python benchmarks/memory_bombs.py [--skip-eval]

Builds the bombs of tests/bombs.py in a temporary folder (an ICO wrapping a 20000 x 20000 PNG
saved as .png, a deflated checkpoint that unpacks to 1.5 GiB, a packed dataset declaring
20000 x 20000 images), runs each command in a fresh process and prints its exit code, wall
time and peak resident memory (the largest process of its tree, ``ru_maxrss``; Linux).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO)]

from bombs import inflate_packed_shapes, measured_cli, write_checkpoint_bomb, write_ico_bomb  # noqa: E402
from minidata import make_mini_iharmony  # noqa: E402


def _row(name, args):
    started = time.perf_counter()
    result = measured_cli(*args, timeout=900)
    seconds = time.perf_counter() - started
    error = next((line for line in result["stderr"].splitlines() if line.startswith("Error:")), "")
    print(f"| {name} | {result['code']} | {seconds:.1f} s | {result['peak_kib'] / 1024:.0f} MiB | {error[:90]} |",
          flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-eval", action="store_true", help="skip the packed-file bomb (slow before the fix)")
    options = parser.parse_args()
    os.environ.setdefault("HARMONIZE_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        root = make_mini_iharmony(tmp / "ds", subsets=("HFlickr",), n_train=2, n_test=2)
        composites = sorted((root / "HFlickr" / "composite_images").iterdir())
        masks = root / "HFlickr" / "masks"
        mask = masks / (composites[0].stem.rsplit("_", 1)[0] + ".png")
        print("| bomb | exit | time | peak RSS | message |\n| --- | --- | --- | --- | --- |")
        ico = write_ico_bomb(tmp / "ico" / "bomb.png")
        _row("ICO in a .png: apply", ("apply", ico, mask, "-o", tmp / "out.png", "--model", "lab-transfer"))
        pack_root = make_mini_iharmony(tmp / "ds2", subsets=("HFlickr",), n_train=2, n_test=1)
        write_ico_bomb(sorted((pack_root / "HFlickr" / "composite_images").iterdir())[0])
        _row("ICO in a dataset: prepare", ("prepare", "--root", pack_root, "-o", tmp / "ico.h5", "--workers", "0"))
        bomb = write_checkpoint_bomb(tmp / "bomb.pth")
        _row("zip checkpoint: apply --weights", ("apply", composites[0], mask, "-o", tmp / "out2.png", "--weights", bomb))
        _row("zip checkpoint: export", ("export", bomb, "-o", tmp / "out.pth"))
        if not options.skip_eval:
            packed = tmp / "bomb.h5"
            measured_cli("prepare", "--root", root, "-o", packed, "--workers", "0")
            inflate_packed_shapes(packed, side=20000)
            _row("packed 20000^2 shapes: eval", ("eval", "--data", packed, "--model", "lab-transfer",
                                                 "--workers", "0"))


if __name__ == "__main__":
    main()
