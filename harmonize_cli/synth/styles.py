"""The three foreground changes of ``harmonize synth``, as pure functions on sRGB pixels.

Each style mimics how one iHarmony4 subset's composites differ from their real images:

``color``         (HCOCO)      Reinhard-style colour transfer in CIE L*a*b*: the foreground's
                               per-channel mean and standard deviation are moved to those of
                               another photo's object region, by ``strength`` (1 = all the way).
``retouch``       (HAdobe5k)   photographic retouching: exposure and white balance (temperature,
                               tint) in linear light, then an S-shaped tone curve (contrast),
                               then saturation.
``illumination``  (Hday2night) a change of light: ``dimmer`` (less light), ``warmer`` (reddish,
                               like tungsten) or ``cooler`` (bluish, like dusk), applied as a gain
                               on linear light.

Every function takes and returns float arrays ``... x 3`` of sRGB values in [0, 1] (results
clipped to [0, 1]); they do not know about masks. :data:`RANGES` lists the interval each
parameter is drawn from (uniformly); :func:`draw_params` draws one set, rounded to 4 decimals so
that the manifest records exactly what was applied.
"""

from __future__ import annotations

import numpy as np

from .colour import LUMA, lab_to_rgb, linear_to_srgb, rgb_to_lab, srgb_to_linear

STYLES = ("color", "retouch", "illumination")
ALIASES = {"colour": "color", "reinhard": "color", "retouching": "retouch", "light": "illumination"}
SUBSET_LIKE = {"color": "HCOCO", "retouch": "HAdobe5k", "illumination": "Hday2night"}
ILLUMINATION_KINDS = ("dimmer", "warmer", "cooler")

# parameter -> (low, high), drawn uniformly
RANGES = {
    "color": {
        "strength": (0.6, 1.0),
    },
    "retouch": {
        "exposure_ev": (-1.0, 1.0),  # stops: linear light x 2**ev
        "temperature": (-0.15, 0.15),  # red gain 1 + t, blue gain 1 - t (linear light)
        "tint": (-0.08, 0.08),  # green gain 1 + tint (linear light)
        "contrast": (-0.5, 0.5),  # S-curve amount c: y = x - c sin(2 pi x) / (2 pi)
        "saturation": (0.6, 1.4),  # chroma around Rec. 709 luma x s
    },
    "illumination": {  # per kind
        "dimmer": {"exposure_ev": (-2.0, -0.75), "shift": (0.0, 0.0)},
        "warmer": {"exposure_ev": (-1.0, 0.25), "shift": (0.15, 0.35)},
        "cooler": {"exposure_ev": (-1.5, 0.0), "shift": (0.15, 0.35)},
    },
}
_EPS = 1e-6


def canonical_styles(names) -> tuple[str, ...]:
    """``"color,retouch"`` or a list -> canonical style names in the given order (ValueError if unknown)."""
    if isinstance(names, str):
        names = [part for part in (p.strip() for p in names.split(",")) if part]
    chosen: list[str] = []
    for name in names:
        key = ALIASES.get(str(name).strip().lower(), str(name).strip().lower())
        if key not in STYLES:
            raise ValueError(f"unknown style {name!r} (choose from {', '.join(STYLES)})")
        if key not in chosen:
            chosen.append(key)
    if not chosen:
        raise ValueError(f"no style given (choose from {', '.join(STYLES)})")
    return tuple(chosen)


# --------------------------------------------------------------------------- the styles
def reinhard_transfer(rgb, target_mean, target_std, source_mean, source_std, strength=1.0) -> np.ndarray:
    """Move the L*a*b* statistics of ``rgb`` from ``target_*`` to ``source_*``.

    Per channel: ``lab' = (lab - target_mean) / target_std * source_std + source_mean``, then
    ``(1 - strength) * lab + strength * lab'``. ``target_*`` are the statistics of the pixels
    being changed (the foreground), ``source_*`` those of the region the colours come from.
    """
    lab = rgb_to_lab(rgb)
    target_mean, source_mean = np.asarray(target_mean, float), np.asarray(source_mean, float)
    target_std, source_std = np.asarray(target_std, float), np.asarray(source_std, float)
    moved = (lab - target_mean) / np.maximum(target_std, _EPS) * source_std + source_mean
    return np.clip(lab_to_rgb((1.0 - strength) * lab + strength * moved), 0.0, 1.0)


def tone_curve(values: np.ndarray, contrast: float) -> np.ndarray:
    """S-shaped curve through (0, 0), (0.5, 0.5), (1, 1): ``x - c sin(2 pi x) / (2 pi)``.

    Its slope is ``1 + c`` at mid-grey and ``1 - c`` at the ends: ``c > 0`` adds contrast,
    ``c < 0`` flattens; monotonic for ``|c| < 1``.
    """
    return values - contrast * np.sin(2.0 * np.pi * values) / (2.0 * np.pi)


def retouch(rgb, exposure_ev=0.0, temperature=0.0, tint=0.0, contrast=0.0, saturation=1.0) -> np.ndarray:
    """Exposure and white balance on linear light, then the tone curve, then saturation."""
    gains = np.array([1.0 + temperature, 1.0 + tint, 1.0 - temperature]) * 2.0**exposure_ev
    encoded = linear_to_srgb(srgb_to_linear(rgb) * gains)
    curved = np.clip(tone_curve(encoded, contrast), 0.0, 1.0)
    luma = (curved @ LUMA)[..., None]
    return np.clip(luma + saturation * (curved - luma), 0.0, 1.0)


def illumination_gains(kind: str, exposure_ev: float, shift: float) -> np.ndarray:
    """Linear-light RGB gains of a light change: ``2**ev`` times the light's colour."""
    if kind == "dimmer":
        colour = np.array([1.0, 1.0, 1.0])
    elif kind == "warmer":
        colour = np.array([1.0 + shift, 1.0, 1.0 - shift])
    elif kind == "cooler":
        colour = np.array([1.0 - shift, 1.0, 1.0 + shift])
    else:
        raise ValueError(f"unknown illumination kind {kind!r} (choose from {', '.join(ILLUMINATION_KINDS)})")
    return colour * 2.0**exposure_ev


def illumination(rgb, kind="dimmer", exposure_ev=-1.0, shift=0.0) -> np.ndarray:
    """The same surface under another light: linear light times :func:`illumination_gains`."""
    return np.clip(linear_to_srgb(srgb_to_linear(rgb) * illumination_gains(kind, exposure_ev, shift)), 0.0, 1.0)


# --------------------------------------------------------------------------- parameters
def _uniform(rng: np.random.Generator, bounds) -> float:
    low, high = bounds
    return round(float(rng.uniform(low, high)), 4) if high > low else float(low)


def draw_params(style: str, rng: np.random.Generator) -> dict:
    """One set of parameters of ``style`` drawn from :data:`RANGES` (colour: without the source)."""
    if style == "color":
        return {"strength": _uniform(rng, RANGES["color"]["strength"])}
    if style == "retouch":
        return {name: _uniform(rng, bounds) for name, bounds in RANGES["retouch"].items()}
    if style == "illumination":
        kind = ILLUMINATION_KINDS[int(rng.integers(len(ILLUMINATION_KINDS)))]
        ranges = RANGES["illumination"][kind]
        return {"kind": kind, "exposure_ev": _uniform(rng, ranges["exposure_ev"]),
                "shift": _uniform(rng, ranges["shift"])}
    raise ValueError(f"unknown style {style!r}")


def apply_style(style: str, rgb: np.ndarray, params: dict, target_stats=None, source_stats=None) -> np.ndarray:
    """Apply ``style`` with ``params`` to sRGB pixels in [0, 1].

    ``color`` also needs ``target_stats`` and ``source_stats``: ``(mean, std)`` in L*a*b* of the
    foreground and of the source region.
    """
    if style == "color":
        if target_stats is None or source_stats is None:
            raise ValueError("the color style needs the statistics of the foreground and of the source")
        return reinhard_transfer(rgb, target_stats[0], target_stats[1], source_stats[0], source_stats[1],
                                 params["strength"])
    if style == "retouch":
        return retouch(rgb, **params)
    if style == "illumination":
        return illumination(rgb, **params)
    raise ValueError(f"unknown style {style!r}")
