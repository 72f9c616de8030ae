"""Verifying weights files and remembering the verified ones (the cache manifest).

A downloaded (or hand-placed) checkpoint is used only after it loads safely
(``weights_only=True``), its tensors match the expected architecture's layout exactly, and its
sha256 matches the registry's where one is known. The sha256, size and modification time of
each verified file go into ``<cache>/manifest.json``; a later run that finds the file changed on
disk says so instead of loading it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

from ..atomic import atomic_write_text
from ..errors import WeightsError
from ..jsonstore import read_entries
from .layouts import fits, rank_architectures
from .state import describe_file, extract_state_dict, safe_load, sha256_of

MANIFEST_NAME = "manifest.json"


def verify_file(path, weights, sha256: Optional[str] = None) -> str:
    """Check that ``path`` is what ``weights`` (a PretrainedWeights) promises; returns its sha256.

    Raises WeightsError with one line saying what the file is instead.
    """
    path = Path(path)
    digest = sha256 or sha256_of(path)
    if weights.sha256 and digest != weights.sha256.lower():
        raise WeightsError(f"{path}: sha256 {digest[:12]}... differs from the released file's "
                           f"{weights.sha256[:12]}... ({describe_file(path)})", _refetch_hint(weights))
    if weights.hash_prefix and not digest.startswith(weights.hash_prefix.lower()):
        raise WeightsError(f"{path}: sha256 {digest[:12]}... does not start with {weights.hash_prefix} "
                           f"({describe_file(path)})", _refetch_hint(weights))
    try:
        checkpoint = safe_load(path)
        state = extract_state_dict(checkpoint)
    except WeightsError as exc:
        raise WeightsError(exc.message, _refetch_hint(weights)) from None
    if weights.kind == "harmonization" and not fits(weights.arch, state):
        score, looks_like = rank_architectures(state)[0]
        raise WeightsError(f"{path} is not a {weights.arch} checkpoint (its tensors look like {looks_like}, "
                           f"{score:.0%} agree)", _refetch_hint(weights))
    return digest


def _refetch_hint(weights) -> str:
    return f"run `harmonize zoo download {weights.name} --force`, or place the right file there by hand"


# ------------------------------------------------------------------------------------- manifest
def _manifest_path(folder: Path) -> Path:
    return Path(folder) / MANIFEST_NAME


def _valid_entry(name, entry) -> bool:
    """A manifest entry as :func:`record` writes it: sha256 (64 hex digits), size and mtime_ns
    (non-negative integers)."""
    def count(value):
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    digest = entry.get("sha256") if isinstance(entry, dict) else None
    return (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest.lower())
            and count(entry.get("size")) and count(entry.get("mtime_ns")))


def read_manifest(folder) -> dict:
    """The cache's verified files; a damaged entry is left out (that file counts as never
    verified, and is verified again before use), with one warning."""
    entries = read_entries(_manifest_path(folder), _valid_entry, "weights manifest entr(ies)",
                           "those files are verified again before use")
    return entries or {}


def record(path, digest: str, source: str) -> None:
    """Remember ``path`` (in its folder's manifest) as verified with ``digest``."""
    path = Path(path)
    stat = path.stat()
    manifest = read_manifest(path.parent)
    manifest[path.name] = {"sha256": digest, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                           "source": source, "verified": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        atomic_write_text(_manifest_path(path.parent), json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    except OSError:
        pass  # a read-only cache still works; the file is verified again next time


def recorded(path) -> Optional[dict]:
    """The manifest entry of ``path`` if the file is unchanged since it was verified; None if it
    was never verified. Raises WeightsError when the file changed on disk after verification."""
    path = Path(path)
    entry = read_manifest(path.parent).get(path.name)
    if not isinstance(entry, dict) or "sha256" not in entry:
        return None
    stat = path.stat()
    if stat.st_size == entry.get("size") and stat.st_mtime_ns == entry.get("mtime_ns"):
        return entry
    if stat.st_size == entry.get("size") and sha256_of(path) == entry["sha256"]:
        return entry  # touched, same bytes
    raise WeightsError(f"{path} changed on disk since it was verified (sha256 {entry['sha256'][:12]}...)",
                       f"run `harmonize zoo download {path.stem} --force` to fetch it again")
