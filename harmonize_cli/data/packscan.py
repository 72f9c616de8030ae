"""Pass 1 of packing (``harmonize prepare``): what to pack, and which samples can be packed.

:func:`find_sources` reads the list files (iHarmony4 or HYouTube layout) and fingerprints the
sources with the pack's options; :func:`scan_files` parses the header of every file once and
keeps the samples whose three files exist, can be read and agree in size. This is cheap and
finds most problems before any decoding. :mod:`harmonize_cli.data.pack` drives both.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from ..limits import DEFAULT_MAX_PIXELS
from . import hyoutube, imageio, layout
from .packfile import FORMAT_VERSION, relative
from .packjobs import _probe_chunk
from .packreport import Problems, listing_notes, size_problem

ROLES = (("composite", "composite"), ("mask", "mask"), ("real", "real image"))


@dataclass
class Sources:
    """The listed samples of the chosen subsets and splits, and their fingerprint."""

    chosen: list  # the subsets packed
    refs: list  # every listed sample (layout.SampleRef)
    notes: list  # informational notes (a split missing from a subset, listing oddities)
    fingerprint: str  # sources and options: an unchanged pack is up to date
    bad_lines: list = field(default_factory=list)  # list-file lines that name no sample
    clip_problems: list = field(default_factory=list)  # listed clips without frames

    @property
    def listed(self) -> int:
        """Every sample the list files name, usable or not."""
        return len(self.refs) + len(self.bad_lines)

    def problems(self) -> Problems:
        """The problems known before any file is read: bad list lines and empty clips."""
        problems = Problems(self.chosen)
        for line in self.bad_lines:  # a problem of that line; the rest is packed
            ref = layout.SampleRef(line.subset, line.split, line.name, line.listing, line.listing, line.listing)
            problems.add(line.listing, f"bad line {line.name!r}: {line.reason}", ref)
        for clip_problem in self.clip_problems:  # a listed clip without frames: the others go on
            problems.add(clip_problem.path, clip_problem.reason, clip_problem)
        return problems


@dataclass
class Scan:
    """What pass 1 found: every file's header, and the samples worth decoding."""

    probed: dict  # path -> (size, format, error)
    valid: list  # samples whose three files exist, parse and agree in size


def chunks(items, size):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def fingerprint(root: Path, refs, options: dict) -> str:
    """A digest of the options and every sample's files (name, size, modification time)."""
    digest = hashlib.sha256()
    digest.update(json.dumps(options, sort_keys=True).encode())
    seen = {}
    for ref in refs:
        digest.update(f"{ref.subset}\0{ref.split}\0{ref.name}\0".encode())
        for path in (ref.composite, ref.mask, ref.real):
            key = str(path)
            if key not in seen:
                seen[key] = imageio.file_state(path)
            rel = relative(root, path)
            digest.update(f"{rel}\0{seen[key]}\0".encode())
    return digest.hexdigest()


def find_sources(root: Path, subsets, splits: list, max_side: int, storage: str, max_pixels: int) -> Sources:
    """The samples the list files name under ``root``, with notes, problems and fingerprint."""
    video = hyoutube.is_root(root)
    bad_lines: list = []
    if video:
        chosen = hyoutube.resolve_subsets(root, subsets)
        refs, notes, clip_problems = hyoutube.scan_available(root, splits)
    else:
        chosen = layout.resolve_subsets(root, subsets)
        refs, notes = layout.scan_available(root, chosen, splits, bad_lines=bad_lines)
        clip_problems = []
    notes = notes + listing_notes(refs)
    options = {
        "format_version": FORMAT_VERSION,
        "max_side": max_side,
        "storage": storage,
        "subsets": chosen,
    }
    # only when not the default, so that files packed before these options stay up to date
    if list(splits) != list(layout.SPLITS):
        options["splits"] = list(splits)
    if max_pixels != DEFAULT_MAX_PIXELS:
        options["max_pixels"] = max_pixels
    if video:
        options["layout"] = hyoutube.LAYOUT
    return Sources(chosen, refs, notes, fingerprint(root, refs, options), bad_lines, clip_problems)


def scan_files(refs, runner, max_pixels: int, problems: Problems, progress) -> Scan:
    """Parse every file's header once (in ``runner``'s workers); a bad sample is a problem."""
    unique = list(OrderedDict.fromkeys(str(p) for ref in refs for p in (ref.composite, ref.mask, ref.real)))
    probed = {}
    done = 0
    progress("scan", 0, len(unique))
    for paths, results in runner.map(_probe_chunk, chunks(unique, 64), max_pixels):
        probed.update(zip(paths, results))
        done += len(paths)
        progress("scan", done, len(unique))

    valid = []
    for ref in refs:
        bad = False
        sizes = []
        for attribute, role in ROLES:
            path = getattr(ref, attribute)
            size, _fmt, error = probed[str(path)]
            if error == "missing":
                problems.add(path, f"missing {role}", ref)
                bad = True
            elif error and error.startswith("too large"):
                problems.add(path, f"{role} {error}", ref)
                bad = True
            elif error:
                problems.add(path, f"unreadable {role}: {error}", ref)
                bad = True
            sizes.append(size)
        if not bad and not (sizes[0] == sizes[1] == sizes[2]):
            problems.add(*size_problem(ref, sizes), ref)
            bad = True
        if not bad:
            valid.append(ref)
    return Scan(probed, valid)
