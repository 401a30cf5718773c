"""Measure the query-based separator like the paper's table (Lee, Choi & Lee).

On the held-out ``test`` split of ``crossmix multitracks`` (singers, songs and accompaniments
never used in training or validation), every stem of every song is separated from the full
mixture (all six stems at their rendered levels, the whole 10-s song):

- with the **ground-truth query** (a 2-s stretch of the target stem itself, as the paper's
  "GT" row), the **class-mean** latent, and the class mean **after one iterative re-query**;
- median SDR per class (drums, bass, vocals, other; BSS-eval SDR from ``fast_bss_eval``) and the
  SI-SDR improvement over the unprocessed mixture;
- **zero-shot**: the ``zeroshot`` split, whose target parts are played by General MIDI programs
  held out of training entirely, separated with a ground-truth query;
- the **vocal SDR against Spleeter 2-stems** (Crossmix's own port) on the same mixtures;
- the **time to remove a source from a 3-minute accompaniment** (44.1 kHz stereo, CPU);
- with ``--oracle``, the **ideal ratio mask** ceiling per class at one or more STFTs: the SDR
  that a perfect magnitude mask of the mixture's STFT reaches (the model estimates such a mask,
  so it cannot do better than its own STFT's figure).

    python bench/query_separation.py --data /work/data/aqss --json docs/aqss-results.json
    python bench/query_separation.py --data /work/data/aqss --curves RUN/log.jsonl --plot docs/aqss-curves.png
    python bench/query_separation.py --data /work/data/aqss --write-test-clip tests/data/aqss
    python bench/query_separation.py --data /work/data/aqss --oracle 512/256,1024/256,2048/512

Needs ``fast_bss_eval`` (``pip install fast-bss-eval``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.audio.decode import Audio, resample  # noqa: E402
from core.registry import load_query_separator  # noqa: E402
from core.separation.by_example import QuerySeparator, separate_with_query, si_sdr  # noqa: E402
from training.aqss_data import CLASS_OF, CLASSES, STEMS, Multitrack, load_split  # noqa: E402
from training.aqss_eval import bss_sdr, evaluate_songs  # noqa: E402


def spleeter_vocals(songs: list[Multitrack]) -> list[dict[str, Any]]:
    """Spleeter 2-stems' vocal SDR on the same full mixtures (run at 44.1 kHz stereo)."""
    from core.separation.separator import Separator

    sep = Separator.spleeter_2stems(device=torch.device("cpu"))
    rows = []
    for song in songs:
        sr = int(song.meta["sr"])
        mix = np.sum([song.stems[s] for s in song.present()], axis=0).astype(np.float32)
        big = resample(np.stack([mix, mix]), sr, 44100)
        stems = sep.separate(Audio(big, 44100))
        voc = resample(stems.vocals.samples.mean(axis=0, keepdims=True), 44100, sr)[0][: len(mix)]
        voc = np.pad(voc, (0, len(mix) - len(voc)))
        target = song.stems["vocals"]
        sdr_v, sdr_m = bss_sdr([target, target], [voc, mix])
        rows.append({"song": song.folder.name, "sdr_spleeter": sdr_v, "sdr_mix": sdr_m,
                     "si_sdr_spleeter": si_sdr(target, voc)})
    return rows


def time_three_minutes(model: QuerySeparator, songs: list[Multitrack], *, threads: int) -> float:
    """Seconds to remove the drums (class mean) from a 3-minute 44.1 kHz stereo accompaniment."""
    parts = []
    for song in songs:
        sr = int(song.meta["sr"])
        acc = np.sum([song.stems[s] for s in song.present() if s != "vocals"], axis=0).astype(np.float32)
        parts.append(resample(acc[None], sr, 44100)[0])
    acc = np.concatenate(parts)
    acc = np.tile(acc, int(np.ceil(180 * 44100 / len(acc))))[: 180 * 44100]
    audio = Audio(np.stack([acc, acc * 0.9]), 44100)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        separate_with_query(model, Audio(audio.samples[:, : 44100 * 5], 44100), source_class="drums")  # warm
        t0 = time.perf_counter()
        separate_with_query(model, audio, source_class="drums")
        return time.perf_counter() - t0
    finally:
        torch.set_num_threads(old)


def ideal_ratio_mask_estimate(mix: np.ndarray, target: np.ndarray, *, n_fft: int, hop: int) -> np.ndarray:
    """``target`` as the mixture's STFT times the ideal ratio mask ``|T| / (|T| + |M - T|)``."""
    win = torch.hann_window(n_fft, dtype=torch.float64)
    spec = {k: torch.stft(torch.from_numpy(np.asarray(x, dtype=np.float64)), n_fft, hop, window=win,
                          center=True, return_complex=True) for k, x in (("mix", mix), ("target", target))}
    t, r = spec["target"].abs(), (spec["mix"] - spec["target"]).abs()
    mask = t / (t + r).clamp_min(1e-12)
    out: np.ndarray = torch.istft(spec["mix"] * mask, n_fft, hop, window=win, center=True,
                                  length=len(mix)).numpy()
    return out


def oracle_table(songs: list[Multitrack], stfts: list[tuple[int, int]]) -> dict[str, dict[str, float]]:
    """Median ideal-ratio-mask SDR per class over every stem of ``songs`` (full mixtures), per STFT."""
    table: dict[str, dict[str, float]] = {}
    for n_fft, hop in stfts:
        per: dict[str, list[float]] = {}
        for song in songs:
            mix = np.sum([song.stems[s] for s in song.present()], axis=0)
            for name in song.present():
                est = ideal_ratio_mask_estimate(mix, song.stems[name], n_fft=n_fft, hop=hop)
                per.setdefault(CLASS_OF[name], []).append(bss_sdr([song.stems[name]], [est])[0])
        table[f"{n_fft}/{hop}"] = {c: float(np.median(v)) for c, v in per.items()}
    return table


def summarise(rows: list[dict[str, Any]], modes: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cls in (*CLASSES, "all"):
        rs = [r for r in rows if cls == "all" or r["class"] == cls]
        if not rs:
            continue
        d: dict[str, Any] = {"n": len(rs), "median_sdr_mix": float(np.median([r["sdr_mix"] for r in rs]))}
        for m in modes:
            d[f"median_sdr_{m}"] = float(np.median([r[f"sdr_{m}"] for r in rs]))
            d[f"median_sdri_{m}"] = float(np.median([r[f"sdr_{m}"] - r["sdr_mix"] for r in rs]))
            d[f"median_si_sdri_{m}"] = float(np.median([r[f"si_sdr_{m}"] - r["si_sdr_mix"] for r in rs]))
        out[cls] = d
    return out


def read_log(log: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``train`` and ``val`` lines of a ``train-qsep`` log. Lines that a stopped run wrote
    after its last checkpoint are dropped at the resume that redoes those steps."""
    train: list[dict[str, Any]] = []
    val: list[dict[str, Any]] = []
    for line in log.read_text().splitlines():
        r = json.loads(line)
        if r.get("event") == "resume":
            train = [x for x in train if x["step"] <= r["step"]]
            val = [x for x in val if x["step"] <= r["step"]]
        elif r.get("event") == "train":
            train.append(r)
        elif r.get("event") == "val":
            val.append(r)
    return train, val


def plot_curves(log: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, val = read_log(log)
    wave = any(r.get("wave", 0.0) for r in train)
    fig, axes = plt.subplots(1, 3 if wave else 2, figsize=(15 if wave else 10, 3.5))
    t = [r["elapsed_s"] / 60 for r in train]
    ax = axes[0]
    ax.plot(t, [r["rec"] for r in train], label="L1 reconstruction", lw=0.8)
    ax.plot(t, [r["latent"] * 0.1 for r in train], label="0.1 x latent regressor", lw=0.8)
    ax.plot(t, [r["kl"] * 1e-3 for r in train], label="0.001 x KL", lw=0.8)
    ax.set_xlabel("training minutes (1 CPU thread)")
    ax.set_title("training losses (means of 10 batches)")
    ax.legend(fontsize=8)
    if wave:
        ax = axes[1]
        ax.plot(t, [-r["wave"] for r in train], lw=0.6)
        ax.set_xlabel("training minutes (1 CPU thread)")
        ax.set_ylabel("dB")
        ax.set_title("training SDR of the separated waveform (-wave loss)")
    ax = axes[-1]
    tv = [r["elapsed_s"] / 60 for r in val]
    ax.plot(tv, [r["val_sisdri_mean"] for r in val], "o-", label="mean")
    for cls in CLASSES:
        if any(cls in r.get("by_class", {}) for r in val):
            ax.plot(tv, [r.get("by_class", {}).get(cls, np.nan) for r in val], ".--", lw=0.8, label=f"{cls} (median)")
    ax.set_xlabel("training minutes (1 CPU thread)")
    ax.set_ylabel("dB")
    ax.set_title("validation SI-SDR improvement (96 mixtures)")
    if len(ax.get_lines()) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def write_test_clip(data: Path, out: Path) -> None:
    """The shipped-weights test clip: song 0 of the test split, its drums in the full mixture
    (first 5 s) and a query from a later stretch of the same drum stem (5-7 s), 16 kHz mono."""
    song = load_split(data, "test", limit=1)[0]
    sr = int(song.meta["sr"])
    mix = np.sum([song.stems[s] for s in song.present()], axis=0)[: 5 * sr]
    out.mkdir(parents=True, exist_ok=True)
    sf.write(out / "mix.flac", mix, sr, subtype="PCM_24")
    sf.write(out / "target.flac", song.stems["drums"][: 5 * sr], sr, subtype="PCM_24")
    sf.write(out / "query.flac", song.stems["drums"][5 * sr: 7 * sr], sr, subtype="PCM_24")
    (out / "clip.json").write_text(json.dumps({
        "split": "test", "song": song.folder.name, "target": "drums", "mix": "all six stems, 0-5 s",
        "query": "the drum stem, 5-7 s", "programs": song.meta["programs"],
        "made_by": "python bench/query_separation.py --data DATA --write-test-clip tests/data/aqss"}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder made by 'crossmix multitracks'")
    ap.add_argument("--model", default="shipped", help="shipped (default) or a .safetensors path")
    ap.add_argument("--split", default="test", help="test (default) or val")
    ap.add_argument("--songs", type=int, default=None, help="use the first N songs of each split")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-spleeter", action="store_true")
    ap.add_argument("--json", type=Path, help="write the rows and summary here")
    ap.add_argument("--curves", type=Path, help="a training log.jsonl to plot (with --plot)")
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--write-test-clip", type=Path, help="write the shipped-weights test clip to this folder")
    ap.add_argument("--oracle", metavar="N_FFT/HOP,...",
                    help="only the ideal-ratio-mask ceiling per class at these STFTs (16 kHz), e.g. 512/256,2048/512")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.oracle:
        try:
            stfts = [(int(a), int(b)) for a, b in (x.split("/") for x in args.oracle.split(","))]
        except ValueError:
            ap.error("--oracle takes N_FFT/HOP pairs separated by commas, e.g. 512/256,2048/512")
        table = oracle_table(load_split(args.data, args.split, limit=args.songs), stfts)
        for stft, row in table.items():
            print(f"{stft:>10}  " + "  ".join(f"{c} {v:6.2f} dB" for c, v in row.items()), flush=True)
        if args.json:
            args.json.write_text(json.dumps({"split": args.split, "oracle_median_sdr": table}, indent=1) + "\n")
        return 0
    if args.write_test_clip:
        write_test_clip(args.data, args.write_test_clip)
        return 0
    if args.curves:
        plot_curves(args.curves, args.plot)
        return 0
    model = load_query_separator(args.model, device=torch.device("cpu"))
    modes = ("gt", "class", "iterative")
    t0 = time.process_time()
    test = load_split(args.data, args.split, limit=args.songs)
    rows = evaluate_songs(model, test, modes=modes)
    summary = {"split": args.split, "songs": len(test), "mask_power": model.config.mask_power,
               "per_class": summarise(rows, modes)}
    if args.split == "test":
        zs = load_split(args.data, "zeroshot", limit=args.songs)
        zrows = evaluate_songs(model, zs, targets="held_out", modes=("gt", "class"))
        summary["zeroshot"] = summarise(zrows, ("gt", "class"))
        summary["zeroshot_by_part"] = {
            p: {"n": len(rs), "median_sdri_gt": float(np.median([r["sdr_gt"] - r["sdr_mix"] for r in rs]))}
            for p in STEMS if (rs := [r for r in zrows if r["target"] == p])}
        rows += [{**r, "zeroshot": True} for r in zrows]
        if not args.no_spleeter:
            srows = spleeter_vocals(test)
            voc = [r for r in rows if r["target"] == "vocals" and not r.get("zeroshot")]
            summary["vocals_vs_spleeter"] = {
                "n": len(srows), "median_sdr_spleeter": float(np.median([r["sdr_spleeter"] for r in srows])),
                "median_sdr_gt": float(np.median([r["sdr_gt"] for r in voc])),
                "median_sdr_class": float(np.median([r["sdr_class"] for r in voc])),
                "median_sdr_mix": float(np.median([r["sdr_mix"] for r in srows]))}
        summary["seconds_3min_remove_1thread"] = time_three_minutes(model, test, threads=1)
        summary["seconds_3min_remove_2threads"] = time_three_minutes(model, test, threads=2)
    summary["cpu_seconds"] = time.process_time() - t0
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
