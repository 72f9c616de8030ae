"""Throughput of `harmonize eval` at fixed256: batched, overlapped evaluation vs. one image at a time.

    python benchmarks/eval_throughput.py --images 96 --json eval_bench.json

Builds a synthetic test set in iHarmony4 layout (tests/minidata.py, 480x640 images), packs it with
`harmonize prepare`, and evaluates iDIH (random weights: speed does not depend on them) with the
same engine four ways: batch 16 or 1, with 2 DataLoader workers decoding ahead or decoding in the
main process (batch 1 without workers is how the reference evaluation loop runs). Reports images/s
of the whole pass (best of ``--repeat``) and checks that every way gives the same metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=96, help="test composites (default 96)")
    parser.add_argument("--model", default="idih")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    from minidata import make_mini_iharmony

    from harmonize_cli import zoo
    from harmonize_cli.data import HarmonizationDataset, eval_transform
    from harmonize_cli.data.pack import pack_dataset
    from harmonize_cli.evaluation import evaluate

    per_subset = max(1, args.images // 4)
    with tempfile.TemporaryDirectory() as tmp:
        root = make_mini_iharmony(Path(tmp) / "iHarmony4", n_train=1, n_test=per_subset, size=(480, 640),
                                  adobe_scale=1)
        packed = Path(tmp) / "set.h5"
        pack_dataset(root, packed, workers=2)
        torch.manual_seed(0)
        model = zoo.create_model(args.model).eval()
        configs = {"batched (batch 16, 2 workers)": dict(batch_size=16, workers=2),
                   "one at a time (batch 1, no workers)": dict(batch_size=1, workers=0),
                   "batched (batch 16, no workers)": dict(batch_size=16, workers=0),
                   "one at a time (batch 1, 2 workers)": dict(batch_size=1, workers=2)}
        figures, summaries = {}, {}
        for label, options in configs.items():
            best = 0.0
            for _ in range(args.repeat):
                dataset = HarmonizationDataset(packed, split="test", transform=eval_transform("fixed256"),
                                               keep_raw=True)
                start = time.perf_counter()
                result = evaluate(model, dataset, device=args.device, progress=False, **options)
                best = max(best, len(dataset) / (time.perf_counter() - start))
            figures[label] = round(best, 2)
            summaries[label] = result.summary()
            print(f"{label}: {best:.2f} images/s over {len(dataset)} images")
    values = list(summaries.values())
    same = all(abs(other[k] - values[0][k]) <= 1e-3 * max(1.0, abs(values[0][k])) for other in values for k in values[0])
    print(f"identical metrics: {same}")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "device": args.device, "images_per_s": figures,
                                         "summary": summaries, "identical_metrics": same}, indent=2))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
