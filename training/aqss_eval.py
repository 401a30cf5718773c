"""Scoring the query-based separator on whole multitrack songs, and calibrating a trained one.

:func:`evaluate_songs` is the protocol of ``bench/query_separation.py`` (and of the paper's
table): every stem of a song is separated from the **full mixture** (all stems at their
rendered levels, the whole song, processed as the app does), with a ground-truth query (a 2-s
stretch of the stem itself), the class-mean latent, or the class mean after one re-query, and
scored by BSS-eval SDR (``fast_bss_eval``, 512-tap distortion filter) and SI-SDR.

:func:`calibrate` sets the two inference-time choices of a trained model on the **validation**
split, never on a test split:

- its class-mean latents, recomputed from more training queries than the trainer uses (the
  trainer takes 48 a class at every new best checkpoint, to stay quick);
- ``mask_power``: the mask is raised to this power at inference (above 1, a sharper soft
  mask), the candidate with the best mean of the issue's six figures (median SDR with the GT
  query and with the class mean, for drums, bass and vocals).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.audio.decode import Audio
from core.errors import TrainingError
from core.separation.by_example import QuerySeparator, separate_with_query, si_sdr
from training.aqss_data import CLASS_OF, Multitrack, load_split

QUERY_SECONDS = 2.0
#: The classes the issue's targets name, and the modes they are measured with.
TARGET_CLASSES = ("drums", "bass", "vocals")
TARGET_MODES = ("gt", "class")


def bss_sdr(refs: list[np.ndarray], ests: list[np.ndarray]) -> list[float]:
    """BSS-eval SDR (512-tap distortion filter) of each estimate against its reference."""
    import fast_bss_eval

    r = np.stack(refs)[:, None, :].astype(np.float64)
    e = np.stack(ests)[:, None, :].astype(np.float64)
    return [float(v) for v in np.asarray(fast_bss_eval.sdr(r, e, clamp_db=100.0)).ravel()]


def query_of(stem: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A 2-s stretch of ``stem`` where it plays (the loudest of 8 random tries)."""
    n = int(QUERY_SECONDS * sr)
    starts = rng.integers(0, len(stem) - n + 1, size=8)
    best = max(starts, key=lambda s: float(np.mean(stem[s:s + n] ** 2)))
    return stem[int(best):int(best) + n]


def separate(model: QuerySeparator, mix: np.ndarray, sr: int, *, query: np.ndarray | None = None,
             source_class: str | None = None, iterations: int = 0) -> np.ndarray:
    res = separate_with_query(model, Audio(mix[None].astype(np.float32), sr),
                              query=None if query is None else Audio(query[None].astype(np.float32), sr),
                              source_class=source_class, iterations=iterations)
    out: np.ndarray = res.source.samples[0]
    return out


def evaluate_songs(model: QuerySeparator, songs: list[Multitrack], *, targets: str = "all",
                   modes: tuple[str, ...] = ("gt", "class", "iterative"), seed: int = 0,
                   classes: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One row per (song, target stem): SDR and SI-SDR of the mixture and of each mode.

    ``targets``: ``"all"`` stems, or ``"held_out"`` (the zero-shot split's held-out part);
    ``classes`` keeps only targets of these classes (the queries drawn stay the same).
    """
    rows = []
    rng = np.random.default_rng([seed, 0xBE4C])
    for song in songs:
        sr = int(song.meta["sr"])
        present = song.present()
        mix = np.sum([song.stems[s] for s in present], axis=0)
        names = present if targets == "all" else [song.meta["held_out_part"]]
        for name in names:
            target = song.stems[name]
            cls = CLASS_OF[name]
            q = query_of(target, sr, rng)
            if classes is not None and cls not in classes:
                continue
            ests = {}
            if "gt" in modes:
                ests["gt"] = separate(model, mix, sr, query=q)
            if "class" in modes:
                ests["class"] = separate(model, mix, sr, source_class=cls)
            if "iterative" in modes:
                ests["iterative"] = separate(model, mix, sr, source_class=cls, iterations=1)
            keys = ["mix", *ests]
            sdrs = bss_sdr([target] * len(keys), [mix, *ests.values()])
            row = {"song": song.folder.name, "target": name, "class": cls,
                   "program": song.meta["programs"].get(name)}
            for k, v in zip(keys, sdrs, strict=True):
                row[f"sdr_{k}"] = v
                row[f"si_sdr_{k}"] = si_sdr(target, mix if k == "mix" else ests[k])
            rows.append(row)
    return rows


def target_figures(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The issue's six figures (median SDR, ``CLASS_MODE``) and their mean (``mean``)."""
    out = {}
    for cls in TARGET_CLASSES:
        for mode in TARGET_MODES:
            vals = [r[f"sdr_{mode}"] for r in rows if r["class"] == cls]
            if vals:
                out[f"{cls}_{mode}"] = round(float(np.median(vals)), 3)
    out["mean"] = round(float(np.mean(list(out.values()))), 3) if out else float("nan")
    return out


@dataclass
class Calibration:
    """What :func:`calibrate` measured and chose."""

    mask_power: float
    class_queries: int
    figures: dict[str, dict[str, float]] = field(default_factory=dict)  # candidate -> target_figures
    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"split": "val", "mask_power": self.mask_power, "class_queries": self.class_queries,
                "figures": self.figures}


def calibrate(model_path: str | Path, data_dir: str | Path, out: str | Path, *,
              powers: Sequence[float] = (1.0, 1.5, 2.0), class_queries: int = 480,
              songs: int | None = None, log: Callable[[str], None] | None = None) -> Calibration:
    """Recompute the class-mean latents of ``model_path`` from ``class_queries`` training queries,
    choose ``mask_power`` among ``powers`` on the validation split, and save the result to ``out``
    (its config records the figures of every candidate under ``training["calibration"]``)."""
    from training.aqss_train import class_means, excerpt_samples

    if not powers or any(not 0.0 < p < float("inf") for p in powers):
        raise TrainingError("Mask powers must be positive numbers, e.g. 1,1.5,2.")
    if class_queries < 1:
        raise TrainingError("--class-queries must be at least 1.")
    say = log or (lambda _m: None)
    model = QuerySeparator.load(model_path, device=torch.device("cpu"))
    train = load_split(Path(data_dir), "train")
    val = load_split(Path(data_dir), "val", limit=songs)
    cfg = model.config
    seed = int(cfg.training.get("seed", 0))
    model.class_latents.copy_(class_means(model, train, per_class=class_queries, seed=seed,
                                          samples=excerpt_samples(cfg, cfg.query_frames)))
    cal = Calibration(mask_power=float(powers[0]), class_queries=class_queries)
    for p in powers:
        cfg.mask_power = float(p)
        figs = target_figures(evaluate_songs(model, val, modes=TARGET_MODES, classes=TARGET_CLASSES))
        cal.figures[f"{p:g}"] = figs
        say(f"mask power {p:g}: " + ", ".join(f"{k} {v:.2f}" for k, v in figs.items()))
    best = max(powers, key=lambda p: cal.figures[f"{p:g}"]["mean"])
    cal.mask_power = float(best)
    cfg.mask_power = float(best)
    cfg.training = {**cfg.training, "calibration": cal.to_dict(), "calibrated_from": str(model_path)}
    cal.path = str(model.save(out))
    say(f"chose mask power {best:g} -> {cal.path}")
    return cal
