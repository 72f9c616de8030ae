"""`harmonize zoo`: list the architectures and pretrained weights, download weights."""

from __future__ import annotations

import json

import click

from .. import console
from ..completion import complete_released


@click.group(epilog="Examples:\n\n  harmonize zoo list\n\n  harmonize zoo download hrnet18s_idih256")
def zoo():
    """Architectures, pretrained weights and the weights cache."""


@zoo.command("list", epilog="Example:\n\n  harmonize zoo list --json > models.json")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of tables.")
def list_cmd(as_json):
    """List every architecture (with its reference name) and the released weights."""
    from rich.table import Table

    from .. import settings
    from .. import zoo as model_zoo

    models = model_zoo.list_models()
    weights = model_zoo.list_weights()
    if as_json:
        payload = {
            "models": models,
            "weights": [
                {"name": w.name, "file": w.filename, "url": w.url, "arch": w.arch, "kind": w.kind,
                 "input_size": w.input_size, "metrics": w.metrics, "cached": model_zoo.cached(w) is not None}
                for w in weights
            ],
            "cache": str(settings.weights_dir()),
        }
        click.echo(json.dumps(payload, indent=2))
        return
    table = Table(title="Architectures", show_lines=False)
    for column in ("name", "reference name", "input", "params", "released weights (All MSE / PSNR)"):
        table.add_column(column)
    for row in models:
        pretrained = row["pretrained"]
        if pretrained:
            all_row = pretrained["metrics"].get("All", {})
            mark = " (cached)" if pretrained["cached"] else ""
            released = f"{pretrained['name']}: {all_row.get('MSE')} / {all_row.get('PSNR')}{mark}"
        else:
            released = "-" if row["family"] != "baseline" else "no weights needed"
        params = f"{row['num_params'] / 1e6:.2f}M" if row["num_params"] else ("0" if row["num_params"] == 0 else "?")
        table.add_row(row["name"], ", ".join(row["aliases"]) or "-", str(row["input_size"] or "any"), params, released)
    console.out_console.print(table)
    backbones = Table(title="ImageNet backbones (for training)")
    for column in ("name", "file", "cached"):
        backbones.add_column(column)
    for w in model_zoo.list_weights("backbone"):
        backbones.add_row(w.name, w.filename, "yes" if model_zoo.cached(w) else "no")
    console.out_console.print(backbones)
    console.out_console.print(f"Weights cache: {settings.weights_dir()}")


@zoo.command("download", epilog="Examples:\n\n  harmonize zoo download hrnet18s_idih256\n\n"
             "  harmonize zoo download --all")
@click.argument("names", nargs=-1, shell_complete=complete_released)
@click.option("--all", "download_all", is_flag=True, help="Download every released harmonization checkpoint.")
@click.option("--force", is_flag=True, help="Download again even if the file is cached.")
def download_cmd(names, download_all, force):
    """Download pretrained weights (harmonization checkpoints or ImageNet backbones) into the cache."""
    from .. import zoo as model_zoo
    from ..errors import HarmonizeError, UsageError

    if download_all:
        names = tuple(w.name for w in model_zoo.HARMONIZATION_WEIGHTS)
    if not names:
        raise UsageError("name the weights to download", "see `harmonize zoo list`, or use --all")
    for name in names:
        model_zoo.get_weights(name)  # an unknown name is a usage error (exit 2), before any download
    failures = []
    for name in names:
        try:
            path = model_zoo.fetch(name, force=force)
            console.info(f"[green]ok[/green] {name}: {path}")
        except HarmonizeError as exc:
            failures.append(f"{name}: {exc}")
            console.error(f"{name}: {exc}")
    if failures:
        raise HarmonizeError(f"{len(failures)} of {len(names)} downloads failed", "each is listed above")
