"""`harmonize train`: the paper's training recipe, resumable, mixed precision, multi-GPU via torchrun."""

from __future__ import annotations

import sys

import click

from .. import console
from ..completion import complete_architectures, complete_weights
from ..choices import EVAL_RESIZES, parse_list
from ..training.config import AMP_CHOICES, LOSS_CHOICES, RECIPE_CHOICES, default_workers

EPILOG = """Examples:

\b
  harmonize train --arch idih-hrnet-w18s --data iharmony4.h5 --out runs/hrnet18s
  harmonize train --resume --out runs/hrnet18s                  continue after a stop
  harmonize train --config runs/hrnet18s/config.toml --out runs/again
  harmonize train --arch idih --no-pretrained --epochs 10 --seed 0
  harmonize train --init hrnet18s_idih256 --data my_set.h5 --out runs/tuned     fine-tune
  harmonize train --arch pctnet-vit --data iharmony4.h5 --out runs/pct    PCT-Net, its authors' recipe
  torchrun --nproc_per_node=4 -m harmonize_cli train --arch idih-hrnet-w18s --out runs/ddp

Defaults are the paper's recipe, the same for every network (--recipe paper; docs/training.md);
the run folder holds config.toml, metrics.jsonl, train.log, last.pth, best.pth, epoch_NNN.pth and images/.
"""


def _int_list(value, name):
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ("", "none", "-"):
        return []
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of epochs", param_hint=name) from None


def _names(values):
    return parse_list(values) or None


@click.command("train", epilog=EPILOG)
@click.option("--arch", "-a", metavar="NAME", shell_complete=complete_architectures,
              help="Architecture (our or the reference name, see `harmonize zoo list`). "
                   "[default: that of --init, else idih-hrnet-w18s]")
@click.option("--init", metavar="NAME|FILE|URL", shell_complete=complete_weights,
              help="Fine-tune: start from these weights (a released name such as hrnet18s_idih256, a file or a URL), "
                   "read safely and verified; --arch defaults to the checkpoint's, and the defaults become "
                   "20 epochs at lr 1e-4 with x0.1 at epoch 15.")
@click.option("--data", metavar="FILE.h5|DIR",
              help="Packed dataset or iHarmony4 folder (default: $HARMONIZE_DATA, else the one `prepare` packed).")
@click.option("--out", "-o", metavar="DIR", help="Run folder (default: runs/ARCH-DATE-TIME).")
@click.option("--recipe", type=click.Choice(RECIPE_CHOICES),
              help="Defaults for the options below: 'paper' (180 epochs, x0.1 at 160,175, FN-MSE A_min 100, for "
                   "every network) or 'reference' (the authors' per-architecture scripts); PCT-Net: its authors' recipe "
                   "either way. [default: paper]")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs (default: the recipe's; paper: 180).")
@click.option("--milestones", metavar="E1,E2",
              help="MultiStepLR epochs, x0.1 each (default: the recipe's; paper: 160,175; 'none' for a constant lr); "
                   "with --schedule constant-linear, the epoch where the linear decay starts.")
@click.option("--schedule", type=click.Choice(["multistep", "constant-linear"]),
              help="Learning-rate schedule (default: the recipe's: multistep; PCTNet-ViT: constant-linear).")
@click.option("--batch-size", "-b", type=click.IntRange(min=1), help="Global batch over all processes. [default: 16]")
@click.option("--lr", type=float,
              help="Base learning rate (backbone x0.1) (default: the recipe's: 1e-3; PCT-Net: 1e-4 (ViT) or 1e-3 "
                   "(CNN) x batch / 16; with --init: 1e-4).")
@click.option("--loss", type=click.Choice(LOSS_CHOICES),
              help="Training loss (default: the recipe's, fn-mse; PCT-Net: pct).")
@click.option("--min-area", type=float,
              help="FN-MSE A_min in pixels (default: 100; --recipe reference: 1000 for iS2AM and the 512 models; "
                   "PCT-Net: 1000, at full resolution).")
@click.option("--crop", type=click.IntRange(min=8),
              help="RandomResizedCrop size; PCT-Net: the size of the network's view of its full-resolution crops "
                   "(default: the model input, 256).")
@click.option("--fullres-max-side", type=click.IntRange(min=0),
              help="PCT-Net: shrink full-resolution crops to this long side, for memory (0: never). [default: 1024]")
@click.option("--workers", "-j", type=click.IntRange(min=0),
              help="Data loading processes per GPU (0: load in the training process). "
                   f"[default: min(4, CPU cores - 1), here {default_workers()}]")
@click.option("--device", help="auto, cpu, cuda, cuda:N (default: $HARMONIZE_DEVICE or auto).")
@click.option("--amp", type=click.Choice(AMP_CHOICES),
              help="Mixed precision: auto = bf16 on GPUs that have it, else fp16 + GradScaler; off on CPU. [default: auto]")
@click.option("--no-pretrained", is_flag=True, default=None,
              help="Do not load ImageNet weights into the backbone (train it from scratch).")
@click.option("--backbone-weights", type=click.Path(dir_okay=False), metavar="PATH",
              help="ImageNet backbone checkpoint to use instead of the cached download.")
@click.option("--vgg-weights", type=click.Path(dir_okay=False), metavar="PATH",
              help="PCT-Net: VGG16 ImageNet checkpoint of the contrastive loss instead of the cached download "
                   "(`harmonize zoo download vgg16`).")
@click.option("--resume", is_flag=False, flag_value="last", default=None, metavar="[PATH]",
              help="Continue a run: alone, from OUT/last.pth; or from the given checkpoint.")
@click.option("--overwrite", is_flag=True, help="Start over in an existing run folder (its run files are deleted).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), metavar="FILE.toml",
              help="Settings from a file (e.g. a run's config.toml); options given here override it.")
@click.option("--seed", type=click.IntRange(min=0),
              help="Deterministic mode: same seed, same run (a resumed run repeats an uninterrupted one).")
@click.option("--train-subsets", multiple=True, metavar="A,B", help="Training subsets (default: all four).")
@click.option("--val-subsets", multiple=True, metavar="A,B",
              help="Validation subsets' test splits (default: HFlickr,Hday2night,HCOCO; 'none' to skip).")
@click.option("--val-resize", type=click.Choice(EVAL_RESIZES),
              help="Validation resize (default: fixed256, the reference practice).")
@click.option("--val-every", type=click.IntRange(min=0), help="Validate every N epochs (0: never). [default: 1]")
@click.option("--snapshot-every", type=click.IntRange(min=0),
              help="Keep epoch_NNN.pth every N epochs (default: the recipe's, 10; 0: never).")
@click.option("--image-every", type=click.IntRange(min=0), help="PNG grid every N steps (0: never). [default: 1000]")
@click.option("--steps-per-epoch", type=click.IntRange(min=0), help="Cap the steps of an epoch (0: whole set).")
@click.option("--compile", "compile_", is_flag=True, default=None, help="torch.compile the model (GPU).")
@click.option("--sync-bn", is_flag=True, default=None, help="SyncBatchNorm across GPUs (multi-GPU runs).")
@click.option("--no-tensorboard", is_flag=True, default=None, help="Do not write TensorBoard events.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors (same as `harmonize -q train`).")
def train(arch, init, recipe, data, out, epochs, milestones, schedule, batch_size, lr, loss, min_area, crop,
          fullres_max_side, workers, device, amp, no_pretrained, backbone_weights, vgg_weights, resume, overwrite,
          config_file, seed, train_subsets, val_subsets,
          val_resize, val_every, snapshot_every, image_every, steps_per_epoch, compile_, sync_bn, no_tensorboard,
          quiet):
    """Train a harmonization model with the paper's recipe (Adam, MultiStepLR, FN-MSE, ImageNet backbone).

    Validates on the test splits after each epoch, keeps last/best/snapshot checkpoints, resumes
    exactly after Ctrl-C or SIGTERM, and scales out with `torchrun --nproc_per_node=N -m harmonize_cli
    train ...` (see docs/training.md).
    """
    if quiet:
        console.set_verbosity(console.QUIET)
    from ..errors import HarmonizeError, UsageError
    from ..training import TrainConfig
    from ..training import distributed as dist_env
    from ..training import TrainingInterrupted, train as run_training

    if no_pretrained and backbone_weights:
        raise UsageError("--no-pretrained and --backbone-weights exclude each other")
    val_names = _names(val_subsets)
    if val_names is not None and [n.lower() for n in val_names] == ["none"]:
        val_names = []
    overrides = {
        "arch": arch, "init": init, "recipe": recipe, "data": data, "out": out, "epochs": epochs,
        "milestones": _int_list(milestones, "--milestones"),
        "batch_size": batch_size, "lr": lr, "loss": loss, "min_area": min_area, "crop": crop, "workers": workers,
        "device": device, "amp": amp, "backbone_weights": backbone_weights, "seed": seed,
        "schedule": schedule, "fullres_max_side": fullres_max_side, "vgg_weights": vgg_weights,
        "deterministic": True if seed is not None else None,
        "pretrained_backbone": False if no_pretrained else None,
        "train_subsets": _names(train_subsets), "val_subsets": val_names, "val_resize": val_resize,
        "val_every": val_every, "snapshot_every": snapshot_every, "image_every": image_every,
        "steps_per_epoch": steps_per_epoch, "compile": True if compile_ else None,
        "sync_bn": True if sync_bn else None, "tensorboard": False if no_tensorboard else None,
    }
    overrides = {key: value for key, value in overrides.items() if value is not None}
    base = TrainConfig.load(config_file) if config_file else None
    is_main = dist_env.detect().is_main
    try:
        result = run_training(base, resume=resume, overwrite=overwrite, **overrides)
    except TrainingInterrupted as exc:
        if is_main:
            console.warn(exc.message)
            console.err_console.print(f"Resume with: [bold]{exc.hint.split(': ', 1)[-1]}[/bold]")
        sys.exit(exc.exit_code)
    except HarmonizeError as exc:
        if not is_main:  # rank 0 reports it
            sys.exit(exc.exit_code)
        raise
    if is_main:
        best = result.best or {}
        best_text = (f"best validation MSE {best['MSE']:.2f} at epoch {best['epoch']}" if best.get("MSE") is not None
                     else "no validation MSE")
        console.info(f"{result.epochs_done} epochs in {result.run_dir}: {best_text}. "
                     f"Export with: harmonize export {result.run_dir}/best.pth -o model.pth")
