"""Writing cross-mixes: wav, flac, mp3, ogg with tags, through pydub and ffmpeg.

Files are encoded into a temporary file in the target folder and renamed into place, so a
full disk or a failed encoder never leaves a half-written file; an existing file is never
replaced unless asked. Samples are clipped to full scale before integer conversion (a
rendered cross-mix is already limited to -1 dBTP, so lossy encoders stay under 0 dBFS too).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.atomic import atomic_write
from core.audio.decode import Audio
from core.errors import ExportError

#: Formats and the ffmpeg codec / extra parameters used for each.
FORMATS: dict[str, tuple[str, list[str]]] = {
    "wav": ("pcm_s24le", []),
    "flac": ("flac", ["-sample_fmt", "s32", "-bits_per_raw_sample", "24"]),
    "mp3": ("libmp3lame", []),
    "ogg": ("libvorbis", []),
}
#: Formats whose ``bitrate`` option is used.
LOSSY = ("mp3", "ogg")


def export_audio(
    path: str | Path,
    audio: Audio,
    *,
    format: str | None = None,
    bitrate: str = "192k",
    tags: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Encode ``audio`` to ``path`` (wav 24-bit, flac 24-bit, mp3 or ogg Vorbis) with tags.

    Parameters
    ----------
    path : str or Path
        Target file; its suffix gives the format unless ``format`` is given.
    audio : Audio
        ``samples`` float32 ``(channels, n)``; values beyond +/-1 are clipped.
    format : {"wav", "flac", "mp3", "ogg"}, optional
    bitrate : str
        For mp3/ogg, e.g. ``"192k"``, ``"320k"``.
    tags : mapping, optional
        ``title``, ``artist``, ``album``, ``comment``... written as the container's tags.
    overwrite : bool
        Replace an existing file. Without it an existing file raises :class:`ExportError`.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    ExportError
        File exists, unknown format, ffmpeg missing, folder not writable or disk full.
    """
    p = Path(path)
    fmt = _format_of(p, format)
    _check_target(p, overwrite=overwrite)
    pydub = _import_pydub()
    x = np.clip(np.nan_to_num(audio.samples, nan=0.0), -1.0, 1.0).astype(np.float64)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{p}: cannot write in {p.parent} ({exc.strerror or exc}); choose another folder.") from None
    try:
        with atomic_write(p, suffix=f".part.{fmt}") as tmp:
            _encode(tmp, x, audio.sr, fmt=fmt, bitrate=bitrate, tags=tags, segment=pydub.AudioSegment)
            if tmp.stat().st_size == 0:
                raise ExportError(f"{p}: the encoder wrote nothing; is the disk full?")
            if tags and tags.get("comment"):
                _write_comment(tmp, fmt, str(tags["comment"]))
    except pydub.exceptions.CouldntEncodeError as exc:
        last = str(exc).strip().splitlines()[-1:] or ["unknown error"]
        raise ExportError(f"{p}: ffmpeg could not encode it ({last[0]}); is the disk full?") from None
    except OSError as exc:
        raise ExportError(f"{p}: could not write it ({exc.strerror or exc}); is the disk full?") from None
    return p


def _check_target(p: Path, *, overwrite: bool) -> None:
    """Refuse, before any work, an existing file (unless ``overwrite``), a folder, or a
    machine without ffmpeg."""
    if p.exists() and not overwrite:
        raise ExportError(f"{p}: the file exists; choose another name or allow overwriting (--overwrite).")
    if p.is_dir():
        raise ExportError(f"{p}: this is a folder; give a file name.")
    if shutil.which("ffmpeg") is None:
        raise ExportError(f"{p}: exporting needs ffmpeg, which is not installed (apt install ffmpeg).")


def _import_pydub() -> Any:
    """pydub with ``AudioSegment`` and ``exceptions``, imported on first export."""
    with warnings.catch_warnings():
        # pydub warns at import when ffmpeg is elsewhere, and about audioop on Python 3.12.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        import pydub
        import pydub.exceptions
    return pydub


def _encode(tmp: Path, x: npt.NDArray[np.float64], sr: int, *, fmt: str, bitrate: str,
            tags: Mapping[str, str] | None, segment: Any) -> None:
    """Encode ``x`` (``(channels, n)`` within +/-1) to ``tmp`` with pydub's ``segment`` class.

    Lossy codecs overshoot a little: the file is decoded and encoded again at a lower level
    until nothing clips (three tries at most).
    """
    codec, params = FORMATS[fmt]
    gain = 1.0
    for _ in range(3):
        pcm = np.round(x.T * gain * (2**31 - 1)).astype("<i4")  # int32 frames, interleaved
        handle = segment(data=pcm.tobytes(), sample_width=4, frame_rate=sr, channels=x.shape[0]).export(
            str(tmp),
            format=fmt,
            codec=codec,
            bitrate=bitrate if fmt in LOSSY else None,
            parameters=list(params),
            tags=dict(tags) if tags else None,
        )
        handle.close()
        if fmt not in LOSSY:
            break
        peak = _decoded_peak(tmp)
        if peak <= 1.0:
            break
        gain *= 0.995 / peak


def _write_comment(path: Path, fmt: str, comment: str) -> None:
    """Store ``comment`` where players look for it.

    ffmpeg writes a ``comment`` tag as ``DESCRIPTION`` in FLAC/Ogg and as a user-defined
    ``TXXX:comment`` frame in MP3, which most players do not show as the comment; WAV gets a
    proper ``ICMT`` from ffmpeg already.
    """
    from mutagen import MutagenError

    try:
        if fmt == "mp3":
            from mutagen import id3 as mid3

            tags: Any = mid3
            frames = tags.ID3(str(path))
            frames.delall("TXXX:comment")
            frames.add(tags.COMM(encoding=3, lang="eng", desc="", text=[comment]))
            frames.save(str(path))
        elif fmt in ("flac", "ogg"):
            from mutagen import flac, oggvorbis

            kind: Any = flac.FLAC if fmt == "flac" else oggvorbis.OggVorbis
            f = kind(str(path))
            f["COMMENT"] = [comment]
            f.save()
    except MutagenError as exc:
        raise ExportError(f"{path}: could not write its tags ({exc}); is the disk full?") from None


def _decoded_peak(path: Path) -> float:
    from core.audio.decode import load_audio
    from core.errors import AudioError

    try:
        decoded = load_audio(path, max_duration=None, allow_silent=True)
    except AudioError as exc:
        raise ExportError(f"{path}: the encoded file does not decode ({exc}); is the disk full?") from None
    return float(np.max(np.abs(decoded.samples))) if decoded.n else 0.0


def safe_file_stem(text: str) -> str:
    """``text`` with characters that are awkward in file names replaced by ``_`` (dots kept)."""
    s = re.sub(r"[^\w\-. ()]+", "_", text).strip(" ._")
    return s[:120] or "crossmix"


def export_file_name(name: str, format: str) -> str:
    """The file name an export called ``name`` gets in ``format``: ``name.<format>``.

    Only a trailing audio extension the user typed (``.wav``, ``.mp3``...) is replaced; any
    other dot belongs to the name, so ``"my mix v1.0"`` becomes ``"my mix v1.0.wav"`` and
    ``"Dream (ft. CSoul) x Nese"`` keeps everything after ``ft.``.
    """
    from core.audio.decode import AUDIO_EXTENSIONS

    text = name.strip()
    base, dot, ext = text.rpartition(".")
    if dot and base and f".{ext.lower()}" in (*AUDIO_EXTENSIONS, *(f".{f}" for f in FORMATS)):
        text = base
    return f"{safe_file_stem(text)}.{format.lower()}"


def unique_export_paths(names: Sequence[str], folder: str | Path, format: str, *,
                        stems: bool = False) -> list[Path]:
    """One new file in ``folder`` per name of ``names``, as :func:`export_file_name` names it.

    A name already taken, by a file in ``folder`` (or, with ``stems``, by one of its stem
    files) or by an earlier name of the list, gets a number: ``"A x B (2).wav"``, ``(3)``...
    So a batch export never replaces a file and two matches with the same title never
    overwrite each other.
    """
    d = Path(folder)
    taken: set[str] = set()  # case-folded: the same file on a case-insensitive disk
    out: list[Path] = []
    for name in names:
        first = Path(export_file_name(name, format))
        n = 1
        while True:
            p = d / (first.name if n == 1 else f"{first.stem} ({n}){first.suffix}")
            files = [p, *stem_paths(p)] if stems else [p]
            if not any(f.name.casefold() in taken or f.exists() for f in files):
                break
            n += 1
        taken.update(f.name.casefold() for f in files)
        out.append(p)
    return out


def check_export_folder(folder: str | Path) -> Path:
    """Make sure files can be written in ``folder`` (created when missing), before any work.

    Raises
    ------
    ExportError
        It is a file, cannot be created, or cannot be written (read-only, no permission,
        disk full); the message says which and what to do.
    """
    d = Path(folder).expanduser()
    if d.exists() and not d.is_dir():
        raise ExportError(f"{d}: this is a file, not a folder; choose a folder to export to.")
    try:
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=d, prefix=".crossmix-write-test-"):
            pass
    except OSError as exc:
        raise ExportError(f"{d}: cannot write in this folder ({exc.strerror or exc}); "
                          "choose another folder.") from None
    return d


def stem_paths(path: str | Path) -> tuple[Path, Path]:
    """``song.mp3 -> (song_vocals.mp3, song_accompaniment.mp3)`` beside it."""
    p = Path(path)
    return p.with_name(f"{p.stem}_vocals{p.suffix}"), p.with_name(f"{p.stem}_accompaniment{p.suffix}")


def cross_mix_tags(
    *, query_title: str, match_title: str, artist: str = "Crossmix", query_source: str = "", match_source: str = ""
) -> dict[str, str]:
    """Tags for a cross-mix: title ``"<query> x <match>"`` and a comment naming the sources."""
    q_src = query_source or query_title
    m_src = match_source or match_title
    return {
        "title": f"{query_title} x {match_title}",
        "artist": artist,
        "comment": f"Cross-mix: vocal of {q_src} over the accompaniment of {m_src} (made with Crossmix).",
    }


def export_cross_mix(
    path: str | Path,
    mix: Audio,
    *,
    vocals: Audio | None = None,
    accompaniment: Audio | None = None,
    format: str | None = None,
    bitrate: str = "192k",
    tags: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write a cross-mix and, when ``vocals``/``accompaniment`` are given, its two parts.

    The parts go beside ``path`` as ``<stem>_vocals.<ext>`` and ``<stem>_accompaniment.<ext>``.
    Every target is checked before anything is written, so an existing part does not leave
    a new mix beside old parts.

    Returns
    -------
    list of Path
        The files written, the mix first.
    """
    p = Path(path)
    targets = _cross_mix_targets(p, mix, vocals=vocals, accompaniment=accompaniment, tags=tags)
    _format_of(p, format)
    if not overwrite:
        existing = [str(t) for t, _, _ in targets if t.exists()]
        if existing:
            raise ExportError(
                f"{existing[0]}: the file exists; choose another name or allow overwriting (--overwrite)."
            )
    return _export_all_or_nothing(p, targets, fmt=_format_of(p, format), bitrate=bitrate)


_Target = tuple[Path, Audio, Mapping[str, str] | None]


def _cross_mix_targets(p: Path, mix: Audio, *, vocals: Audio | None, accompaniment: Audio | None,
                       tags: Mapping[str, str] | None) -> list[_Target]:
    """The mix's file, audio and tags, then its two parts' (titled ``... (vocals)`` and
    ``... (accompaniment)``) when they are given."""
    targets: list[_Target] = [(p, mix, tags)]
    if vocals is not None or accompaniment is not None:
        if vocals is None or accompaniment is None:
            raise ExportError(f"{p}: stems need both the vocal and the accompaniment part.")
        v_path, a_path = stem_paths(p)
        base = dict(tags or {})
        title = base.get("title", p.stem)
        targets.append((v_path, vocals, {**base, "title": f"{title} (vocals)"}))
        targets.append((a_path, accompaniment, {**base, "title": f"{title} (accompaniment)"}))
    return targets


def _export_all_or_nothing(p: Path, targets: list[_Target], *, fmt: str, bitrate: str) -> list[Path]:
    """All or nothing: every file is encoded beside its target first and only when all are
    complete are they renamed into place, so a full disk never leaves a mix without its stems."""
    staged: list[tuple[Path, Path]] = []
    try:
        for target, audio, t in targets:
            stage = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.stage.{fmt}")
            staged.append((stage, target))
            try:
                export_audio(stage, audio, format=fmt, bitrate=bitrate, tags=t, overwrite=True)
            except ExportError as exc:
                raise ExportError(
                    str(exc).replace(str(stage), str(target))
                    + " Nothing was written: the mix and its stems are written together or not at all."
                ) from None
        placed: list[Path] = []
        try:
            for stage, target in staged:
                os.replace(stage, target)
                placed.append(target)
        except OSError as exc:
            for done in placed:
                done.unlink(missing_ok=True)
            raise ExportError(f"{p}: could not put the files in place ({exc.strerror or exc}); "
                              "nothing was written.") from None
    finally:
        for stage, _ in staged:
            stage.unlink(missing_ok=True)
    return [target for _, target in staged]


def export_format(path: str | Path, format: str | None = None) -> str:
    """The export format of ``path`` (``format``, else its extension).

    Raises
    ------
    ExportError
        Not one of wav, flac, mp3, ogg: checked before any work is done.
    """
    return _format_of(Path(path), format)


def _format_of(p: Path, format: str | None) -> str:
    fmt = (format or p.suffix.lstrip(".")).lower()
    if fmt == "oga":
        fmt = "ogg"
    if fmt not in FORMATS:
        raise ExportError(
            f"{p}: cannot export {fmt or 'a file without an extension'}; use .wav, .flac, .mp3 or .ogg."
        )
    return fmt
