"""`harmonize zoo`: list the architectures and pretrained weights, download weights."""

from __future__ import annotations

import json

import click

from .. import console
from ..completion import complete_released
from ..suggest import SuggestingGroup


@click.group(cls=SuggestingGroup,
             epilog="Examples:\n\n  harmonize zoo list\n\n  harmonize zoo info hrnet18s_idih256\n\n"
                    "  harmonize zoo download hrnet18s_idih256")
def zoo():
    """Architectures, pretrained weights and the weights cache."""


@zoo.command("list", epilog="Example:\n\n  harmonize zoo list --json > models.json")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of tables.")
def list_cmd(as_json):
    """List every architecture (with its reference name), the released weights and the backbones."""
    from rich.table import Table

    from .. import settings
    from .. import zoo as model_zoo
    from ..zoo.cards import size_text

    if as_json:
        from ..zoo.listing import zoo_listing

        click.echo(json.dumps(zoo_listing(), indent=2))
        return
    models = model_zoo.list_models()
    # Names are what one types: never wrapped or cut (no_wrap, at least their own width); the
    # other columns wrap first when the terminal is narrow.
    table = Table(title="Architectures", show_lines=False)
    _name_column(table, "name", [row["name"] for row in models])
    _name_column(table, "reference name", [alias for row in models for alias in row["aliases"]])
    for column in ("input", "params", "released weights"):
        table.add_column(column, overflow="fold")
    for row in models:
        weights_text = "yes" if row["pretrained"] else ("-" if row["family"] != "baseline" else "none needed")
        params = f"{row['num_params'] / 1e6:.2f}M" if row["num_params"] else ("0" if row["num_params"] == 0 else "?")
        table.add_row(row["name"], ", ".join(row["aliases"]) or "-", str(row["input_size"] or "any"), params,
                      weights_text)
    console.out_console.print(table)

    released = Table(title="Released weights")
    harmonization = model_zoo.list_weights("harmonization")
    _name_column(released, "name", [w.name for w in harmonization])
    _name_column(released, "architecture", [w.arch for w in harmonization])
    for column in ("All MSE / PSNR", "size", "cached"):
        released.add_column(column, overflow="fold")
    for w in harmonization:
        all_row = w.metrics.get("All", {})
        released.add_row(w.name, w.arch, f"{all_row.get('MSE')} / {all_row.get('PSNR')}", size_text(w),
                         "yes" if model_zoo.cached(w) else "no")
    console.out_console.print(released)
    console.out_console.print("Model cards: harmonize zoo info NAME (a name from either table)", soft_wrap=True)

    backbones = Table(title="ImageNet backbones (for training)")
    backbone_weights = model_zoo.list_weights("backbone")
    _name_column(backbones, "name", [w.name for w in backbone_weights])
    for column in ("file", "size", "cached"):
        backbones.add_column(column, overflow="fold")
    for w in backbone_weights:
        backbones.add_row(w.name, w.filename, size_text(w), "yes" if model_zoo.cached(w) else "no")
    console.out_console.print(backbones)
    console.out_console.print(f"Weights cache: {settings.weights_dir()}", soft_wrap=True)


def _name_column(table, header: str, names) -> None:
    width = max([len(header), *(len(name) for name in names)])
    table.add_column(header, no_wrap=True, min_width=width, overflow="ignore")


@zoo.command("info", epilog="Examples:\n\n  harmonize zoo info hrnet18s_idih256\n\n"
             "  harmonize zoo info idih-hrnet-w18s --json")
@click.argument("name", shell_complete=complete_released)
@click.option("--json", "as_json", is_flag=True, help="Print the model card as JSON.")
def info_cmd(name, as_json):
    """The model card of NAME (an architecture, its reference name or released weights):
    architecture, source, licence, size, sha256 when pinned, preprocessing, published metrics,
    and whether the weights are cached."""
    from ..zoo.cards import model_card

    card = model_card(name)
    if as_json:
        click.echo(json.dumps(card, indent=2))
        return
    for line in _card_lines(card):
        console.out_console.print(line, soft_wrap=True, markup=False, highlight=False)


def _card_lines(card: dict):
    arch, weights = card["architecture"], card["weights"]
    if arch is not None:
        yield f"{arch['name']}" + (f" (reference name {arch['reference_name']})" if arch["reference_name"] else "")
        if arch["description"]:
            yield f"  {arch['description']}"
        params = f"{arch['num_params']:,}" if arch["num_params"] is not None else "?"
        size = f"{arch['input_size']}x{arch['input_size']}" if arch["input_size"] else "any size"
        yield f"  architecture: family {arch['family']}, input {size}"  \
              + (" (applied at full resolution)" if arch["full_resolution"] else "") + f", {params} parameters"
        if arch["backbone"]:
            yield f"  backbone: {arch['backbone']} (ImageNet weights for training)"
        yield f"  input normalisation: mean {arch['normalization']['mean']}, std {arch['normalization']['std']}"
        paper = (arch["paper"] or {}).get("All")
        if paper:
            yield "  paper (iHarmony4, All): " + ", ".join(f"{key} {value}" for key, value in paper.items())
    if weights is None:
        yield f"  weights: {card.get('weights_note', 'none')}"
        return
    yield f"weights {weights['name']} ({weights['kind']})"
    yield f"  file: {weights['file']}"
    yield f"  url: {weights['url']}"
    if weights["source"]:
        yield f"  source: {weights['source']}"
    yield f"  licence: {weights['licence'] or 'not stated here: see the source page'}"
    if weights["size_bytes"] is None:
        yield "  size: unknown until downloaded"
    else:
        yield (f"  size: {weights['size_bytes']:,} bytes" if weights["size_exact"] else
               f"  size: about {weights['size_bytes'] / 1e6:.0f} MB (float32 parameters; exact once cached)")
    if weights["sha256"]:
        yield f"  sha256: {weights['sha256']} (pinned: a different file is refused)"
    elif weights["hash_prefix"]:
        yield f"  sha256: starts with {weights['hash_prefix']} (pinned prefix)"
    else:
        yield "  sha256: not pinned (the file is checked by loading it safely against the architecture)"
    pre = weights["preprocessing"] or {}
    if pre:
        norm = pre.get("normalization") or {}
        parts = [f"{key} {value}" for key, value in pre.items() if key != "normalization"]
        if norm:
            parts.append(f"normalisation mean {norm.get('mean')} std {norm.get('std')}")
        yield "  preprocessing: " + ", ".join(parts)
    for subset, values in (weights["metrics"] or {}).items():
        yield f"  published {subset}: " + ", ".join(f"{key} {value}" for key, value in values.items())
    if weights["note"]:
        yield f"  note: {weights['note']}"
    yield (f"  cached: yes, {weights['cache_path']}" if weights["cached"] else
           f"  cached: no (harmonize zoo download {weights['name']} puts it in {weights['cache_path']})")


@zoo.command("download", epilog="Examples:\n\n  harmonize zoo download hrnet18s_idih256\n\n"
             "  harmonize zoo download idih-hrnet-w18s\n\n  harmonize zoo download --all")
@click.argument("names", nargs=-1, shell_complete=complete_released)
@click.option("--all", "download_all", is_flag=True, help="Download every released harmonization checkpoint.")
@click.option("--force", is_flag=True, help="Download again even if the file is cached.")
def download_cmd(names, download_all, force):
    """Download pretrained weights into the cache: NAMES are released checkpoints, ImageNet
    backbones, or architectures that have released weights (idih-hrnet-w18s -> hrnet18s_idih256)."""
    from .. import zoo as model_zoo
    from ..errors import HarmonizeError, UsageError
    from ..zoo.cards import find_weights

    if download_all:
        names = tuple(w.name for w in model_zoo.HARMONIZATION_WEIGHTS)
    if not names:
        raise UsageError("name the weights to download", "see `harmonize zoo list`, or use --all")
    # an unknown name is a usage error (exit 2) that suggests the closest, before any download
    chosen = list({weights.name: weights for weights in map(find_weights, names)}.values())
    failures = []
    for weights in chosen:
        try:
            path = model_zoo.fetch(weights, force=force)
            console.info(f"[green]ok[/green] {weights.name}: {path}")
        except HarmonizeError as exc:
            failures.append(f"{weights.name}: {exc}")
            console.error(f"{weights.name}: {exc}")
    if failures:
        raise HarmonizeError(f"{len(failures)} of {len(chosen)} downloads failed", "each is listed above")
