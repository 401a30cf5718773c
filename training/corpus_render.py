"""Rendering a song plan to audio: Festival singing (or speech voices stretched onto the
notes), re-voicing, vocal effects, the mix.

Every vocal goes through the same chain whatever its base voice: Festival's output (22.05,
32 or 44.1 kHz) is resampled to 16 kHz for WORLD, re-synthesised, resampled to 44.1 kHz and
low-passed at :data:`VOCAL_BANDWIDTH_HZ`, so no singer can be told by its bandwidth.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
from scipy import signal

from core.audio.decode import resample
from core.errors import TrainingError
from training.corpus_melody import Note, SongPlan
from training.corpus_singers import (
    FRAME_MS,
    WORLD_SR,
    BaseVoice,
    Singer,
    base_voice,
    design_f0,
    midi_to_hz,
    pyworld,
    revoice,
)

SR = 44100
#: The common bandwidth of every vocal (Hz).
VOCAL_BANDWIDTH_HZ = 7500.0
F64 = npt.NDArray[np.float64]


# --- Festival -------------------------------------------------------------------------------


def singing_xml(notes: list[Note], *, natural_f0: float) -> str:
    """Festival SINGING mark-up for ``notes`` on the song's timeline (rests fill the gaps).

    Festival sings each note near the voice's natural pitch (moved by whole octaves): the
    real pitch is imposed later by WORLD, and diphones pitched far from where they were
    recorded analyse badly.
    """
    lines = [
        '<?xml version="1.0"?>',
        '<!DOCTYPE SINGING PUBLIC "-//SINGING//DTD SINGING mark up//EN" "Singing.v0_1.dtd" []>',
        '<SINGING BPM="60">',
    ]
    t = 0.0
    for n in notes:
        gap = n.onset - t
        if gap > 1e-4:
            lines.append(f'<REST SECONDS="{gap:.4f}"></REST>')
        hz = float(midi_to_hz(float(n.pitch)))
        hz *= 2.0 ** round(float(np.log2(natural_f0 / hz)))
        lines.append(
            f'<PITCH FREQ="{hz:.2f}"><DURATION SECONDS="{n.duration:.4f}">'
            f"{n.lyric}</DURATION></PITCH>"
        )
        t = n.onset + n.duration
    lines.append("</SINGING>")
    return "\n".join(lines) + "\n"


def festival_sing(notes: list[Note], *, voice: str, workdir: Path) -> F64:
    """Sing ``notes`` with Festival voice ``voice``; returns mono float64 at :data:`WORLD_SR`."""
    exe = shutil.which("text2wave")
    if exe is None:
        raise TrainingError("Festival is not installed; install it with: sudo apt-get install festival "
                            "festvox-czech-dita festvox-suopuhe-lj")
    xml_path = workdir / "vocal.xml"
    wav_path = workdir / "festival.wav"
    xml_path.write_text(singing_xml(notes, natural_f0=base_voice(voice).natural_f0), encoding="utf-8")
    cmd = [exe, "-mode", "singing", "-eval", f"(voice_{voice})", str(xml_path), "-o", str(wav_path)]
    proc = subprocess.run(cmd, capture_output=True, check=False, timeout=600, cwd=workdir)
    if proc.returncode != 0 or not wav_path.is_file():
        msg = proc.stderr.decode("utf-8", "replace").strip()[-500:]
        raise TrainingError(f"{xml_path}: Festival could not sing it with voice {voice} ({msg}). "
                            "Check that the festvox voice packages are installed.")
    data, sr = sf.read(str(wav_path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1, keepdims=True).T
    return np.asarray(resample(np.ascontiguousarray(mono), int(sr), WORLD_SR)[0], dtype=np.float64)


# --- speech-only voices -------------------------------------------------------------------


def speak_syllables(lyrics: list[str], *, voice: BaseVoice, workdir: Path) -> dict[str, F64]:
    """Each of ``lyrics`` said once by speech-only ``voice`` (flite or Festival's plain text
    mode), trimmed of silence: mono float64 at :data:`WORLD_SR` by syllable."""
    wavs = {syl: workdir / f"syllable_{i:03d}.wav" for i, syl in enumerate(lyrics)}
    if voice.engine == "espeak-ng":  # evaluation corpora only (EVALUATION_VOICES)
        exe = shutil.which("espeak-ng")
        if exe is None:
            raise TrainingError("espeak-ng is not installed; install it with: sudo apt-get install espeak-ng")
        for syl, wav in wavs.items():
            proc = subprocess.run([exe, "-v", voice.name.removeprefix("espeak_"), "-w", str(wav), syl],
                                  capture_output=True, check=False, timeout=120, cwd=workdir)
            if proc.returncode != 0:
                raise TrainingError(f"espeak-ng could not say {syl!r} with voice {voice.name} "
                                    f"({proc.stderr.decode('utf-8', 'replace').strip()[-300:]}).")
    elif voice.engine == "flite":
        exe = shutil.which("flite")
        if exe is None:
            raise TrainingError("flite is not installed; install it with: sudo apt-get install flite")
        for syl, wav in wavs.items():
            proc = subprocess.run([exe, "-voice", voice.name.removeprefix("flite_"), "-t", syl, "-o", str(wav)],
                                  capture_output=True, check=False, timeout=120, cwd=workdir)
            if proc.returncode != 0:
                raise TrainingError(f"flite could not say {syl!r} with voice {voice.name} "
                                    f"({proc.stderr.decode('utf-8', 'replace').strip()[-300:]}).")
    else:
        exe = shutil.which("festival")
        if exe is None:
            raise TrainingError("Festival is not installed; install it with: sudo apt-get install festival")
        script = [f"(voice_{voice.name})"]
        for syl, wav in wavs.items():
            script.append(f'(utt.save.wave (SynthText "{syl}") "{wav}" \'riff)')
        (workdir / "speak.scm").write_text("\n".join(script) + "\n", encoding="utf-8")
        proc = subprocess.run([exe, "-b", str(workdir / "speak.scm")], capture_output=True, check=False,
                              timeout=600, cwd=workdir)
        if proc.returncode != 0:
            raise TrainingError(f"Festival could not speak with voice {voice.name} "
                                f"({proc.stderr.decode('utf-8', 'replace').strip()[-300:]}).")
    out: dict[str, F64] = {}
    for syl, wav in wavs.items():
        if not wav.is_file():
            raise TrainingError(f"{voice.name} wrote no audio for {syl!r}; check that its package is installed.")
        data, sr = sf.read(str(wav), dtype="float32", always_2d=True)
        x = resample(np.ascontiguousarray(data.mean(axis=1, keepdims=True).T), int(sr), WORLD_SR)[0]
        out[syl] = _trim_silence(np.asarray(x, dtype=np.float64))
    return out


def _trim_silence(x: F64, *, floor_db: float = -25.0) -> F64:
    """``x`` without the leading and trailing 10-ms frames quieter than ``floor_db`` below its peak."""
    hop = int(WORLD_SR * FRAME_MS / 1000.0)
    n = len(x) // hop
    if n == 0:
        return x
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-20)
    loud = np.flatnonzero(20.0 * np.log10(rms / (rms.max() + 1e-20)) > floor_db)
    if loud.size == 0:
        return x
    return x[loud[0] * hop : (loud[-1] + 1) * hop]


def speech_sing(notes: list[Note], *, voice: BaseVoice, workdir: Path, seconds: float) -> F64:
    """``notes`` "sung" by a speech-only voice, for :func:`revoice` to pitch: mono float64 at
    :data:`WORLD_SR`, ``seconds`` long.

    Each distinct syllable is said once and analysed with WORLD; on each note its frames are
    laid out so that the unvoiced start (the consonant) keeps its spoken speed, up to 30 % of
    the note, and the voiced rest (the vowel) is stretched over the remaining frames. The
    result is synthesised at the voice's natural pitch: the tune is imposed later, as for the
    voices that sing.
    """
    spoken = speak_syllables(sorted({n.lyric for n in notes}), voice=voice, workdir=workdir)
    frames: dict[str, tuple[npt.NDArray[np.bool_], F64, F64]] = {}
    for syl, x in spoken.items():
        # harvest, not dio: dio misses most voicing of the HTS voice's short syllables.
        f0, t = pyworld.harvest(x, WORLD_SR, frame_period=FRAME_MS, f0_floor=60.0, f0_ceil=800.0)
        frames[syl] = (f0 > 0, pyworld.cheaptrick(x, f0, t, WORLD_SR), pyworld.d4c(x, f0, t, WORLD_SR))
    frame_s = FRAME_MS / 1000.0
    n_frames = int(np.ceil(seconds / frame_s)) + 1
    bins = next(iter(frames.values()))[1].shape[1]
    sp = np.full((n_frames, bins), 1e-12)
    ap = np.ones((n_frames, bins))
    f0_out = np.zeros(n_frames)
    for note in notes:
        a = int(round(note.onset / frame_s))
        b = min(int(round((note.onset + note.duration) / frame_s)), n_frames)
        if b - a < 2:
            continue
        voiced, s_sp, s_ap = frames[note.lyric]
        m = len(voiced)
        first = int(np.argmax(voiced)) if voiced.any() else 0
        head = min(first, int(0.3 * (b - a)))
        idx = np.concatenate([np.arange(head), np.round(np.linspace(first, m - 1, b - a - head))]).astype(np.int64)
        sp[a:b], ap[a:b] = s_sp[idx], s_ap[idx]
        f0_out[a:b] = np.where(voiced[idx], voice.natural_f0, 0.0)
    y = pyworld.synthesize(f0_out, np.ascontiguousarray(sp), np.ascontiguousarray(ap), WORLD_SR,
                           frame_period=FRAME_MS)
    return np.asarray(y, dtype=np.float64)


def sing(plan: SongPlan, *, singer: Singer, rng: np.random.Generator, workdir: Path,
         timings: dict[str, float] | None = None) -> F64:
    """The dry vocal of ``plan`` sung by ``singer``: mono float64, 44.1 kHz, band-limited.

    ``timings`` (optional) receives the seconds spent in ``festival`` and ``world``.
    """
    n_out = int(round(plan.seconds * SR))
    if not plan.notes:
        return np.zeros(n_out)
    t0 = time.perf_counter()
    voice = base_voice(singer.voice)
    if voice.engine == "festival-singing":
        x = festival_sing(plan.notes, voice=singer.voice, workdir=workdir)
    else:
        x = speech_sing(plan.notes, voice=voice, workdir=workdir, seconds=plan.seconds)
    t1 = time.perf_counter()
    need = int(round(plan.seconds * WORLD_SR))
    x = np.pad(x, (0, max(0, need - len(x))))[:need]
    n_frames = int(np.ceil(len(x) / (WORLD_SR * FRAME_MS / 1000.0))) + 1
    notes = plan.notes
    f0 = design_f0(
        singer=singer,
        onsets=np.array([n.onset for n in notes]),
        durations=np.array([n.duration for n in notes]),
        pitches=np.array([float(n.pitch) for n in notes]),
        legato=np.array([n.legato for n in notes]),
        n_frames=n_frames,
        rng=rng,
    )
    y = revoice(x, singer=singer, f0_target=f0)
    y = resample(y[None, :].astype(np.float32), WORLD_SR, SR)[0].astype(np.float64)
    y = band_limit(np.pad(y, (0, max(0, n_out - len(y))))[:n_out])
    if timings is not None:
        timings.update(festival=t1 - t0, world=time.perf_counter() - t1)
    return y


def band_limit(x: F64) -> F64:
    """Low-pass at :data:`VOCAL_BANDWIDTH_HZ` (8th-order Butterworth, causal)."""
    sos = signal.butter(8, VOCAL_BANDWIDTH_HZ, btype="low", fs=SR, output="sos")
    return np.asarray(signal.sosfilt(sos, x, axis=-1), dtype=np.float64)


# --- effects ---------------------------------------------------------------------------------


def _biquad(kind: str, f0: float, gain_db: float, q: float = 0.707) -> F64:
    """RBJ cookbook shelf/peak filter as one second-order section."""
    a = 10.0 ** (gain_db / 40.0)
    w = 2.0 * np.pi * f0 / SR
    cw, sw = np.cos(w), np.sin(w)
    alpha = sw / (2.0 * q)
    if kind == "peak":
        b = [1 + alpha * a, -2 * cw, 1 - alpha * a]
        den = [1 + alpha / a, -2 * cw, 1 - alpha / a]
    else:
        sq = 2.0 * np.sqrt(a) * alpha
        if kind == "low":
            b = [a * ((a + 1) - (a - 1) * cw + sq), 2 * a * ((a - 1) - (a + 1) * cw),
                 a * ((a + 1) - (a - 1) * cw - sq)]
            den = [(a + 1) + (a - 1) * cw + sq, -2 * ((a - 1) + (a + 1) * cw), (a + 1) + (a - 1) * cw - sq]
        else:
            b = [a * ((a + 1) + (a - 1) * cw + sq), -2 * a * ((a - 1) + (a + 1) * cw),
                 a * ((a + 1) + (a - 1) * cw - sq)]
            den = [(a + 1) - (a - 1) * cw + sq, 2 * ((a - 1) - (a + 1) * cw), (a + 1) - (a - 1) * cw - sq]
    return np.array([[*(np.array(b) / den[0]), 1.0, den[1] / den[0], den[2] / den[0]]])


def vocal_effects(dry: F64, *, effects: dict[str, float], rng: np.random.Generator) -> F64:
    """EQ and reverb of the song: mono ``(n,)`` in, stereo ``(2, n)`` out (same length)."""
    sos = np.concatenate([
        _biquad("low", 200.0, effects["eq_low_db"]),
        _biquad("peak", effects["eq_mid_hz"], effects["eq_mid_db"], q=1.0),
        _biquad("high", 4000.0, effects["eq_high_db"]),
    ])
    x = signal.sosfilt(sos, dry)
    rt60 = effects["reverb_seconds"]
    n_ir = int(min(1.5 * rt60, 3.0) * SR)
    t = np.arange(n_ir) / SR
    decay = np.exp(-6.9 * t / rt60)
    common = rng.standard_normal(n_ir)
    side = rng.standard_normal(n_ir)
    w = effects["width"]
    ir = np.stack([common + w * side, common - w * side]) * decay
    # The reverb is band-limited like the voice, so the wet signal adds no new bandwidth.
    ir = band_limit(ir)
    ir /= np.sqrt(np.sum(ir**2) / 2.0)
    pre = int(effects["predelay_ms"] / 1000.0 * SR)
    ir = np.pad(ir, ((0, 0), (pre, 0)))
    wet = signal.fftconvolve(np.stack([x, x]), ir, axes=-1)[:, : len(x)]
    out = np.stack([x, x]) + wet * 10.0 ** (effects["reverb_wet_db"] / 20.0)
    return np.asarray(out, dtype=np.float64)


def fade(x: F64, *, seconds: float = 0.4) -> F64:
    """Fade the last ``seconds`` out (raised cosine)."""
    n = min(x.shape[-1], int(seconds * SR))
    ramp = 0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, n))
    y = x.copy()
    y[..., x.shape[-1] - n:] *= ramp
    return y


def active_rms(x: F64, *, frame: int = 2048) -> float:
    """RMS over the louder half of the frames that are not silent (robust to rests)."""
    mono = x.mean(axis=0) if x.ndim == 2 else x
    frames = mono[: len(mono) // frame * frame].reshape(-1, frame)
    e = np.sqrt(np.mean(frames**2, axis=1))
    e = e[e > 1e-5]
    if e.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.sort(e)[e.size // 2:] ** 2)))


def mix_stems(vocal: F64, accompaniment: F64, *, vocal_to_accompaniment_db: float,
              peak: float = 0.89) -> tuple[F64, F64, F64]:
    """Balance ``vocal`` against ``accompaniment`` (both ``(2, n)``) and normalise the mix peak.

    Returns ``(mix, vocal, accompaniment)`` scaled so that ``mix == vocal + accompaniment``.
    """
    rv, ra = active_rms(vocal), active_rms(accompaniment)
    g = 1.0 if rv <= 0 or ra <= 0 else (ra / rv) * 10.0 ** (vocal_to_accompaniment_db / 20.0)
    v = vocal * g
    mix = v + accompaniment
    s = peak / max(float(np.max(np.abs(mix))), 1e-9)
    return mix * s, v * s, accompaniment * s
