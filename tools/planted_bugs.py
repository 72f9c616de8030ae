"""The bugs of issue 23, planted one at a time: each is written into the module, the tests named
beside it run, and the module is restored (also on Ctrl-C). Every one must say CAUGHT.

    python tools/planted_bugs.py              # all of them (about 3 minutes)
    python tools/planted_bugs.py sampler      # those whose name contains "sampler"

Run from the repository root with the worktree's code first on the path (PYTHONPATH=$PWD). It edits
files of the checkout while it runs: not in CI, and not beside another run of the tests.
"""
import subprocess
import sys
from pathlib import Path

PLANTS = [
 ("pct-mask-filter (apply)", "harmonize_cli/apply/resolution.py",
  'small = Image.fromarray(np.asarray(mask, dtype=np.float32), mode="F").resize((width, height), Image.BILINEAR,',
  'small = Image.fromarray(np.asarray(mask, dtype=np.float32), mode="F").resize((width, height), Image.NEAREST,',
  "tests/test_pct_apply.py tests/test_resolution.py"),
 ("pct-mask-filter (training crops)", "harmonize_cli/data/fullres.py",
  'out["mask"] = _resize_mask(mask, self.low_size)',
  'out["mask"] = torch.nn.functional.interpolate(_to_chw_float(mask)[0][None] / 255.0, size=self.low_size, mode="nearest")[0]',
  "tests/test_train_pct.py -k low_resolution_mask"),
 ("synth hard edges (compose)", "harmonize_cli/synth/builder.py",
  'alpha = (mask[inside].astype(np.float64) / 255.0)[:, None]',
  'alpha = (mask[inside] >= 128).astype(np.float64)[:, None]',
  "tests/test_synth.py -k soft"),
 ("synth hard edges (mask load)", "harmonize_cli/synth/inputs.py",
  'mask = np.round(_decode(read_mask, mask_file) * 255.0).astype(np.uint8)',
  'mask = (np.round(_decode(read_mask, mask_file) * 255.0) >= 128).astype(np.uint8) * 255',
  "tests/test_synth.py -k soft"),
 ("sampler never told the epoch (loop)", "harmonize_cli/training/loop.py",
  'parts.sampler.set_epoch(epoch)', 'pass',
  "tests/test_train.py -k sampler"),
 ("sampler ignores set_epoch", "harmonize_cli/training/distributed.py",
  'self.epoch = int(epoch)', 'pass',
  "tests/test_train.py -k sampler"),
 ("atomic writes in place", "harmonize_cli/atomic.py",
  '        yield tmp\n', '        yield target\n',
  "tests/test_atomic.py"),
 ("train crop scale (default)", "harmonize_cli/data/transforms.py",
  'def train_transform(crop=256, scale=(0.5, 1.0)', 'def train_transform(crop=256, scale=(0.08, 1.0)',
  "tests/test_train.py -k crops_with"),
 ("train crop scale (as harmonize train builds it)", "harmonize_cli/training/model_and_data.py",
  'train_transform(config.crop)', 'train_transform(config.crop, scale=(0.25, 1.0))',
  "tests/test_train.py -k crops_with"),
 ("deeplab stem fusion dropped (resnet)", "harmonize_cli/models/resnet.py",
  '            x = x + mask_features\n', '            pass\n',
  "tests/test_backboned.py -k deeplab_stem"),
 ("deeplab stem fusion dropped (backbone)", "harmonize_cli/models/backboned.py",
  'outputs = list(self.deeplab(image, mask_features))', 'outputs = list(self.deeplab(image, None))',
  "tests/test_backboned.py -k deeplab_stem"),
 ("resized masks stored lossy", "harmonize_cli/data/packjobs.py",
  'fmt = "png" if kind == "mask" else "jpeg"', 'fmt = "jpeg"',
  "tests/test_packjobs.py tests/test_prepare.py -k 'max_side_caps or packjobs or resized'"),
 ("markdown fg table MSE/fMSE swapped", "harmonize_cli/evaluation/report.py",
  'rows = [[name, *(_cell(row, column) for column in FG_COLUMNS)] for name, row in result.by_fg_ratio.items()]',
  'rows = [[name, *(_cell(row, column) for column in ("N", "fMSE", "MSE"))] for name, row in result.by_fg_ratio.items()]',
  "tests/test_report.py tests/test_eval.py -k 'markdown or composite_baseline'"),
 ("markdown comparison fg table swapped", "harmonize_cli/evaluation/report.py",
  'rows = [[r.label or r.model, *(_pair(r.by_fg_ratio.get(n), "MSE", "fMSE") for n in FG_RATIO_RANGES)]',
  'rows = [[r.label or r.model, *(_pair(r.by_fg_ratio.get(n), "fMSE", "MSE") for n in FG_RATIO_RANGES)]',
  "tests/test_report.py"),
 ("batch-norm folding drops eps", "harmonize_cli/models/fusion.py",
  'scale = norm.running_var.double().add(norm.eps).rsqrt()', 'scale = norm.running_var.double().rsqrt()',
  "tests/test_inference_opt.py -k fold"),
 ("a block's declared batch-norm fold dropped", "harmonize_cli/models/resnet.py",
  'batchnorm_folds = (("conv1", "bn1"), ("conv2", "bn2"))  # folded',
  'batchnorm_folds = (("conv1", "bn1"),)  # folded',
  "tests/test_fusion.py -k 'w18s or r34'"),
 ("a declared batch-norm fold naming a renamed layer", "harmonize_cli/models/resnet.py",
  'batchnorm_folds = (("conv1", "bn1"), ("conv2", "bn2"))  # folded',
  'batchnorm_folds = (("conv1", "bn1"), ("conv2", "bn_2"))  # folded',
  "tests/test_fusion.py -k declared"),
]
only = sys.argv[1:]
missed = 0
for name, path, old, new, tests in PLANTS:
    if only and not any(o in name for o in only):
        continue
    p = Path(path); text = p.read_text()
    assert text.count(old) == 1, (name, text.count(old))
    p.write_text(text.replace(old, new))
    try:
        r = subprocess.run(f"python -m pytest -q -x -p no:cacheprovider {tests}", shell=True, capture_output=True, text=True)
    finally:
        p.write_text(text)
    last = [l for l in r.stdout.splitlines() if "passed" in l or "failed" in l or "error" in l][-1:]
    verdict = "CAUGHT" if r.returncode == 1 else f"NOT CAUGHT rc={r.returncode}"
    missed += r.returncode != 1
    print(f"{verdict:10s} {name}: {last}", flush=True)
sys.exit(1 if missed else 0)
