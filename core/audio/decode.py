"""Decoding, resampling and writing audio.

Everything is float32 ``(channels, samples)``. Decoding uses libsndfile (soundfile) for
wav/flac/ogg/mp3/aiff and falls back to ffmpeg for what it cannot read (m4a/aac, some mp3s,
opus...). Resampling uses soxr (the library librosa uses for high quality).

Every failure raises a subclass of :class:`core.errors.AudioError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from core.atomic import atomic_write, sha256_file
from core.errors import (
    AudioError,
    CorruptAudioError,
    EmptyAudioError,
    ExportError,
    NotAudioError,
    NotRegularFileError,
    SilentAudioError,
    TooLongError,
    UnreadableFileError,
    UnsupportedFormatError,
)

#: Default limit on song length, in seconds (a 20-minute song).
DEFAULT_MAX_DURATION = 20 * 60.0
#: Peak level (linear) under which a file counts as silent: -80 dBFS.
SILENCE_PEAK = 1e-4
#: File extensions offered in file dialogs and picked up by library scans.
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".mp4", ".aif", ".aiff", ".wma")

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Audio:
    """Decoded audio: ``samples`` is float32 ``(channels, n)`` at ``sr`` Hz."""

    samples: FloatArray
    sr: int
    source: Path | None = None

    def __post_init__(self) -> None:
        if self.samples.ndim != 2:
            raise ValueError(f"samples must be (channels, n), got shape {self.samples.shape}")

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def n(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration(self) -> float:
        return self.n / float(self.sr)

    def mono(self) -> Audio:
        return Audio(self.samples.mean(axis=0, keepdims=True).astype(np.float32), self.sr, self.source)

    def with_channels(self, channels: int) -> Audio:
        """Mono -> duplicated; more channels -> first ``channels`` (stereo from 5.1 fronts)."""
        return Audio(_match_channels(self.samples, channels), self.sr, self.source)

    def resampled(self, sr: int) -> Audio:
        return Audio(resample(self.samples, self.sr, sr), sr, self.source)


def resample(samples: FloatArray, sr_in: int, sr_out: int) -> FloatArray:
    """High-quality resampling (soxr 'HQ') of ``(channels, n)`` float32 audio."""
    if sr_in == sr_out:
        return np.ascontiguousarray(samples, dtype=np.float32)
    out = soxr.resample(samples.T.astype(np.float32), sr_in, sr_out, quality="HQ")
    return np.ascontiguousarray(np.atleast_2d(out.T), dtype=np.float32)


def _match_channels(x: FloatArray, channels: int) -> FloatArray:
    if x.shape[0] == channels:
        return x
    if x.shape[0] == 1:
        return np.repeat(x, channels, axis=0)
    if channels == 1:
        mono: FloatArray = x.mean(axis=0, keepdims=True).astype(np.float32)
        return mono
    return np.ascontiguousarray(x[:channels])


# --- sniffing --------------------------------------------------------------------------------

_NEEDS_FFMPEG = {".m4a", ".aac", ".mp4", ".wma", ".opus"}


def sniff_format(head: bytes) -> str | None:
    """Name the container from the first bytes of a file, or ``None`` if it is not audio."""
    if head[:4] == b"RIFF" and head[8:12] in (b"WAVE", b"RF64"):
        return "wav"
    if head[:4] == b"RF64":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:3] == b"ID3":
        return "mp3"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"MThd":
        return "midi"
    if head[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"):
        return "wma"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xF6) == 0xF0:
        return "aac"  # ADTS
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        return "mp3"  # MPEG audio frame sync
    return None


def _describe_non_audio(head: bytes) -> str:
    if head[:5] == b"%PDF-":
        return "a PDF document"
    if head[:4] == b"PK\x03\x04":
        return "a zip archive"
    if head[:3] == b"\xff\xd8\xff" or head[:8] == b"\x89PNG\r\n\x1a\n":
        return "an image"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head[:256]):
        return "a text file"
    return "not a recognised audio format"


# --- decoding --------------------------------------------------------------------------------


def probe_duration(path: str | Path) -> float | None:
    """Duration in seconds from the file header (no decoding), or ``None`` if unknown."""
    p = Path(path)
    try:
        check_regular_file(p)  # a named pipe would block libsndfile and ffprobe
    except AudioError:
        return None
    try:
        info = sf.info(str(p))
        # a streamed FLAC leaves its length unset and libsndfile reports 2**63 - 1 frames
        if 0 < info.frames < _UNKNOWN_FRAMES and info.samplerate > 0:
            return float(info.frames) / float(info.samplerate)
    except Exception:
        pass
    meta = _ffprobe(p)
    return float(meta["duration"]) if meta and "duration" in meta else None


def load_audio(
    path: str | Path,
    *,
    sr: int | None = None,
    channels: int | None = None,
    max_duration: float | None = DEFAULT_MAX_DURATION,
    allow_silent: bool = False,
) -> Audio:
    """Decode a song file to float32 ``(channels, n)``.

    Parameters
    ----------
    path : str or Path
        The file. Its content decides the decoder, not its extension.
    sr : int, optional
        Resample to this rate (soxr HQ). ``None`` keeps the file's rate.
    channels : int, optional
        Force 1 (mean) or 2 (duplicate mono / keep front pair). ``None`` keeps the file's.
    max_duration : float, optional
        Refuse songs longer than this many seconds (checked from the header before decoding).
    allow_silent : bool
        Return digital silence instead of raising :class:`SilentAudioError`.

    Raises
    ------
    UnreadableFileError, NotAudioError, UnsupportedFormatError, CorruptAudioError,
    EmptyAudioError, SilentAudioError, TooLongError
    """
    p = Path(path)
    kind = _sniff_checked(p, max_duration=max_duration)
    declared = _flac_declared_frames(p) if kind == "flac" else None
    samples, file_sr = _decode(p, kind, declared=declared, max_duration=max_duration)
    _check_decoded(p, samples, file_sr, declared=declared, max_duration=max_duration,
                   allow_silent=allow_silent)
    audio = Audio(samples, file_sr, p)
    if channels is not None:
        audio = audio.with_channels(channels)
    if sr is not None and sr != file_sr:
        audio = audio.resampled(sr)
    return audio


def _sniff_checked(p: Path, *, max_duration: float | None) -> str:
    """The format of ``p`` from its first bytes, refusing before decoding what cannot be a
    song: an empty file, something that is not audio, MIDI, or (from the header) too long."""
    head = _read_head(p)
    if not head:
        raise EmptyAudioError(p, "the file is empty (0 bytes).")
    kind = sniff_format(head)
    if kind is None:
        raise NotAudioError(p, f"this is not audio: it is {_describe_non_audio(head)}.")
    if kind == "midi":
        raise UnsupportedFormatError(p, "MIDI files hold notes, not recorded sound.")

    if max_duration is not None:
        dur = probe_duration(p)
        if dur is not None and dur > max_duration:
            raise TooLongError(
                p, f"it is {_fmt_minutes(dur)} long; the limit is {_fmt_minutes(max_duration)}."
            )
    return kind


def _decode(p: Path, kind: str, *, declared: int | None,
            max_duration: float | None) -> tuple[FloatArray, int]:
    """Samples ``(channels, n)`` and rate: libsndfile where it can, else ffmpeg."""
    if kind in ("wav", "flac", "ogg", "aiff", "mp3") and declared != 0:
        try:
            return _decode_soundfile(p)
        except AudioError:
            raise
        except Exception as exc:  # libsndfile could not: ffmpeg may (odd mp3s, opus in ogg)
            return _decode_ffmpeg(p, first_error=str(exc), max_duration=max_duration)
    # (a FLAC written as a stream, without its length, is read to its end by ffmpeg)
    return _decode_ffmpeg(p, max_duration=max_duration)


def _check_decoded(p: Path, samples: FloatArray, file_sr: int, *,
                   declared: int | None, max_duration: float | None, allow_silent: bool) -> None:
    """Refuse decoded audio that is empty, too long, shorter than its header promised,
    invalid (NaN/inf) or silent."""
    if samples.shape[1] == 0:
        raise EmptyAudioError(p, "the file decodes to zero samples.")
    if max_duration is not None and samples.shape[1] / file_sr > max_duration:
        raise TooLongError(
            p,
            f"it is {_fmt_minutes(samples.shape[1] / file_sr)} long; the limit is {_fmt_minutes(max_duration)}.",
        )
    if declared and samples.shape[1] < declared:
        raise CorruptAudioError(
            p,
            f"it is truncated: its header promises {_fmt_seconds(declared / file_sr)} of audio "
            f"but only {_fmt_seconds(samples.shape[1] / file_sr)} decode.",
        )
    if not np.all(np.isfinite(samples)):
        raise CorruptAudioError(p, "it decodes to invalid (NaN/inf) samples.")
    if not allow_silent and float(np.max(np.abs(samples))) < SILENCE_PEAK:
        raise SilentAudioError(p, "it is silent (peak below -80 dBFS).")


_SPECIAL_FILES = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def check_regular_file(path: str | Path) -> os.stat_result:
    """``os.stat`` of ``path``, refusing anything but a regular file before it is opened:
    opening a named pipe blocks until something writes to it, maybe forever.

    Raises
    ------
    UnreadableFileError
        Missing, a folder, or not permitted.
    NotRegularFileError
        A named pipe, socket or device.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        raise _unreadable(p, exc) from None
    if stat.S_ISDIR(st.st_mode):
        raise UnreadableFileError(p, "this is a folder, not a file.")
    if not stat.S_ISREG(st.st_mode):
        what = next((name for test, name in _SPECIAL_FILES if test(st.st_mode)), "a special file")
        raise NotRegularFileError(p, f"this is {what}, not a regular file.")
    return st


def _unreadable(p: Path, exc: OSError) -> UnreadableFileError:
    """The user's message for an OS error on opening or reading ``p``."""
    if isinstance(exc, FileNotFoundError):
        return UnreadableFileError(p, "no such file.")
    if isinstance(exc, PermissionError):
        return UnreadableFileError(p, "permission denied.")
    return UnreadableFileError(p, f"cannot read it ({exc.strerror or exc}).")


def _read_head(p: Path) -> bytes:
    check_regular_file(p)
    try:
        with open(p, "rb") as fh:
            return fh.read(4096)
    except AudioError:
        raise
    except OSError as exc:
        raise _unreadable(p, exc) from None


#: What libsndfile reports as the frame count of a file whose length it does not know.
_UNKNOWN_FRAMES = 2**62


def _flac_declared_frames(p: Path) -> int | None:
    """Total samples per channel that a FLAC file's STREAMINFO declares: ``0`` when the
    writer did not know it (a stream, e.g. ``ffmpeg ... -f flac -``), ``None`` if unreadable.

    libsndfile and ffmpeg both return what they can of a cut-off FLAC without an error, so
    the declared length is compared with what decodes.
    """
    try:
        with open(p, "rb") as fh:
            head = fh.read(42)
    except OSError:
        return None
    # "fLaC", then the STREAMINFO block (type 0): 18 bytes in, 20 bits of sample rate,
    # 3 of channels, 5 of bits per sample and 36 of total samples.
    if len(head) < 42 or head[:4] != b"fLaC" or head[4] & 0x7F != 0:
        return None
    if int.from_bytes(head[5:8], "big") != 34 or int.from_bytes(head[18:21], "big") >> 4 == 0:
        return None  # not a valid STREAMINFO (length 34, a sample rate): a damaged file
    return int.from_bytes(head[18:26], "big") & ((1 << 36) - 1)


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else _fmt_minutes(seconds)


def _wav_data_shortfall(p: Path) -> tuple[int, int] | None:
    """For a RIFF/WAVE file: (declared, present) bytes of its data chunk, else ``None``.

    libsndfile silently shortens a cut-off WAV to what is there, so the header is read here.
    """
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            head = fh.read(12)
            if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            pos = 12
            while pos + 8 <= size:
                fh.seek(pos)
                chunk = fh.read(8)
                cid, clen = chunk[:4], int.from_bytes(chunk[4:8], "little")
                if cid == b"data":
                    if clen in (0, 0xFFFFFFFF):  # streaming writers leave it unset
                        return None
                    return clen, size - (pos + 8)
                pos += 8 + clen + (clen & 1)
    except OSError:
        return None
    return None


def _decode_soundfile(p: Path) -> tuple[FloatArray, int]:
    with sf.SoundFile(str(p)) as fh:
        sr = int(fh.samplerate)
        data = fh.read(dtype="float32", always_2d=True)
    shortfall = _wav_data_shortfall(p)
    if shortfall is not None and shortfall[1] < shortfall[0]:
        declared, present = shortfall
        raise CorruptAudioError(
            p,
            f"it is truncated: the header promises {declared} bytes of audio but only {present} are there.",
        )
    return np.ascontiguousarray(data.T), sr


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise UnsupportedFormatError(
            Path("ffmpeg"), "ffmpeg is not installed; it is needed for m4a/aac and some mp3/ogg files."
        )
    return exe


def _ffprobe(p: Path) -> dict[str, float] | None:
    exe = shutil.which("ffprobe")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "-v", "error", "-select_streams", "a:0", "-show_entries",
             "stream=channels,sample_rate:format=duration", "-of", "json", str(p)],
            capture_output=True, timeout=60, check=False,
        )
        meta = json.loads(out.stdout or b"{}")
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
        return None
    streams = meta.get("streams") or []
    if not streams:
        return None
    res: dict[str, float] = {
        "channels": float(streams[0].get("channels", 0) or 0),
        "sample_rate": float(streams[0].get("sample_rate", 0) or 0),
    }
    dur = (meta.get("format") or {}).get("duration")
    if dur not in (None, "N/A"):
        res["duration"] = float(dur)
    return res


def _decode_ffmpeg(p: Path, first_error: str = "",
                   max_duration: float | None = None) -> tuple[FloatArray, int]:
    try:
        exe = _ffmpeg()
    except UnsupportedFormatError:
        raise UnsupportedFormatError(
            p, "decoding this format needs ffmpeg, which is not installed (apt install ffmpeg)."
        ) from None
    meta = _ffprobe(p)
    if not meta or meta.get("channels", 0) <= 0 or meta.get("sample_rate", 0) <= 0:
        detail = f" ({first_error})" if first_error else ""
        raise CorruptAudioError(p, f"it has an audio header but no decodable audio stream{detail}.")
    ch, sr = int(meta["channels"]), int(meta["sample_rate"])
    # a little past the limit, so a too-long song is recognised without decoding all of it
    limit = ["-t", f"{max_duration + 1.0:.3f}"] if max_duration is not None else []
    proc = subprocess.run(
        [exe, "-v", "error", "-nostdin", "-i", str(p), "-map", "0:a:0", *limit, "-f", "f32le",
         "-acodec", "pcm_f32le", "-ac", str(ch), "-ar", str(sr), "-"],
        capture_output=True, check=False,
    )
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise CorruptAudioError(p, f"ffmpeg could not decode it: {msg[-1] if msg else 'unknown error'}.")
    data = np.frombuffer(proc.stdout, dtype=np.float32)
    data = data[: (data.size // ch) * ch].reshape(-1, ch).T
    return np.ascontiguousarray(data), sr


def _fmt_minutes(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# --- writing and hashing -----------------------------------------------------------------


def save_audio(path: str | Path, audio: Audio, *, overwrite: bool = True, subtype: str | None = None) -> Path:
    """Write wav or flac atomically (temporary file in the same folder, then rename).

    Raises :class:`ExportError` when the file exists and ``overwrite`` is false, or when the
    disk is full / the folder is not writable; a half-written file is never left behind.
    """
    p = Path(path)
    fmt = p.suffix.lower().lstrip(".")
    if fmt not in ("wav", "flac"):
        raise ExportError(f"{p}: save_audio writes wav or flac; use core.audio.export for {fmt or 'no extension'}.")
    if p.exists() and not overwrite:
        raise ExportError(f"{p}: the file exists; choose another name or allow overwriting.")
    if subtype is None:
        subtype = "FLOAT" if fmt == "wav" else "PCM_24"
    data = audio.samples.T
    if subtype.startswith("PCM"):
        data = np.clip(data, -1.0, 1.0)
    try:
        with atomic_write(p, suffix=f".part.{fmt}") as tmp:
            sf.write(tmp, data, audio.sr, subtype=subtype, format=fmt.upper())
    except OSError as exc:
        raise ExportError(f"{p}: could not write it ({exc.strerror or exc}).") from None
    except sf.LibsndfileError as exc:
        raise ExportError(f"{p}: could not write it ({exc}); is the disk full?") from None
    return p


def file_hash(path: str | Path) -> str:
    """sha256 of a file's bytes (streamed): recognises moved/renamed files."""
    check_regular_file(path)
    try:
        return sha256_file(path)
    except OSError as exc:
        raise UnreadableFileError(Path(path), f"cannot read it ({exc.strerror or exc}).") from None


def audio_hash(audio: Audio) -> str:
    """sha256 of decoded samples and rate: the same recording re-tagged hashes the same."""
    h = hashlib.sha256()
    h.update(f"{audio.sr}:{audio.samples.shape}".encode())
    h.update(np.ascontiguousarray(audio.samples, dtype=np.float32).tobytes())
    return h.hexdigest()
