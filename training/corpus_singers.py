"""Synthetic singers: a Festival or flite voice re-voiced with WORLD (pyworld).

A singer is a base voice plus a handful of continuous voice parameters, all drawn from
``(seed, singer index)`` alone, so the same singer sounds the same in every song and across
runs. :func:`revoice` turns Festival's flat singing into that singer: it re-imposes the f0
(notes with portamento, vibrato and jitter), warps the spectral envelope along frequency
(formant scale), tilts it, and raises the aperiodicity (breathiness).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

with warnings.catch_warnings():
    # pyworld 0.3.5 imports pkg_resources, which warns about its own deprecation.
    warnings.simplefilter("ignore")
    import pyworld as pyworld  # re-exported: corpus_render imports it from here, warnings silenced

F64 = npt.NDArray[np.float64]

#: Rate at which voices are analysed and re-synthesised. Every Festival voice (22.05, 32 or
#: 44.1 kHz native) is resampled to it first, so the native rate cannot identify a singer.
WORLD_SR = 16000
#: WORLD frame period, ms.
FRAME_MS = 10.0


@dataclass(frozen=True)
class BaseVoice:
    """An installed voice and its natural speaking pitch (Hz).

    ``engine`` says how it is made to sing: ``"festival-singing"`` (a Festival diphone voice
    sings the notes itself, ``text2wave -mode singing``), ``"flite"``, ``"festival-speech"`` or
    ``"espeak-ng"`` (evaluation only) (a speech-only voice says each syllable once, and the syllables are stretched onto the
    notes with WORLD: :func:`training.corpus_render.speech_sing`).
    """

    name: str
    language: str
    natural_f0: float
    female: bool
    engine: str = "festival-singing"


#: The six Festival diphone voices of the first corpora (festvox-czech-*, festvox-suopuhe-*):
#: the ``"classic"`` voice set, kept so that corpora and the demo library made with it stay
#: bit-identical.
BASE_VOICES: tuple[BaseVoice, ...] = (
    BaseVoice("czech_dita", "czech", 210.0, True),
    BaseVoice("czech_krb", "czech", 244.0, True),
    BaseVoice("czech_machac", "czech", 90.0, False),
    BaseVoice("czech_ph", "czech", 132.0, False),
    BaseVoice("suo_fi_lj_diphone", "finnish", 190.0, True),
    BaseVoice("hy_fi_mv_diphone", "finnish", 100.0, False),
)

#: Further Festival diphone voices in Debian main that sing (``text2wave -mode singing``
#: honours their note durations): festvox-kallpc16k, festvox-kdlpc16k (American English, two
#: real male speakers), festvox-italp16k, festvox-itapc16k (Italian, a female and a male
#: speaker). Natural f0 measured on their speech with WORLD's harvest. Festival's HTS and
#: clunits voices (us-slt, ca-ona, ru) ignore the singing durations and the Indic NSK voices
#: fail to load in Debian 12, so they are not used. espeak-ng voices are never used in
#: training: they are reserved for independent evaluation.
EXTRA_VOICES: tuple[BaseVoice, ...] = (
    BaseVoice("kal_diphone", "english", 103.0, False),
    BaseVoice("ked_diphone", "english", 103.0, False),
    BaseVoice("lp_diphone", "italian", 202.0, True),
    BaseVoice("pc_diphone", "italian", 108.0, False),
)

#: Speech-only voices that Festival's singing mode cannot use, made to sing syllable by
#: syllable (:func:`training.corpus_render.speech_sing`): flite's awb, rms and slt (three real
#: speakers of the CMU ARCTIC recordings: a Scottish male, an American male and an American
#: female; package flite) and Festival's HTS voice upc_ca_ona (a Catalan female speaker;
#: festvox-ca-ona-hts). Natural f0 measured on a spoken sentence with WORLD's harvest.
#: Festival's us-slt HTS voice is the same speaker as flite's slt, flite's kal16 the same as
#: kal_diphone, and the Russian clunits voice does not read the Latin syllables, so they are not
#: used.
SPEECH_VOICES: tuple[BaseVoice, ...] = (
    BaseVoice("flite_awb", "english", 130.0, False, "flite"),
    BaseVoice("flite_rms", "english", 102.0, False, "flite"),
    BaseVoice("flite_slt", "english", 168.0, True, "flite"),
    BaseVoice("upc_ca_ona_hts", "catalan", 182.0, True, "festival-speech"),
)

#: Named voice sets a corpus draws its singers' base voices from.
VOICE_SETS: dict[str, tuple[BaseVoice, ...]] = {
    "classic": BASE_VOICES,
    "extended": BASE_VOICES + EXTRA_VOICES,
    "speech": SPEECH_VOICES,
    "wide": BASE_VOICES + EXTRA_VOICES + SPEECH_VOICES,
}

#: espeak-ng's formant voices, **for independent evaluation only**: never in a training voice
#: set (:data:`VOICE_SETS`), and ``crossmix train`` refuses a corpus made from them
#: (:data:`EVALUATION_MARKER`). Thirty base voices, ten languages crossed with fifteen
#: espeak-ng variants (each language-variant pair once), made to sing syllable by syllable
#: like the speech voices; singer ``i`` of such a corpus gets base voice ``i mod 30``, so 30
#: singers are 30 different voices, unlike any voice the models trained on.
_EVAL_LANGUAGES = ("en", "de", "es", "fr", "it", "pt", "nl", "pl", "sv", "hu")
_EVAL_VARIANTS = ("m1", "f1", "m2", "f2", "m3", "f3", "m4", "f4", "m5", "f5", "m6", "m7", "adam", "linda", "steph")
_FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5", "linda", "steph")
def _espeak(pairs: list[tuple[int, int]]) -> tuple[BaseVoice, ...]:
    return tuple(
        BaseVoice(f"espeak_{_EVAL_LANGUAGES[a]}+{_EVAL_VARIANTS[b]}", _EVAL_LANGUAGES[a],
                  200.0 if _EVAL_VARIANTS[b] in _FEMALE_VARIANTS else 110.0,
                  _EVAL_VARIANTS[b] in _FEMALE_VARIANTS, "espeak-ng")
        for a, b in pairs)


EVALUATION_VOICES: tuple[BaseVoice, ...] = _espeak([(i % 10, i % 15) for i in range(30)])
#: Thirty *other* language-variant pairs (variant index = language index + 2 mod 5 where the
#: set above has them equal mod 5, so no pair is shared): a validation set for choices between
#: finished models on voices unlike the training voices, kept apart from the test voices.
EVALUATION_VAL_VOICES: tuple[BaseVoice, ...] = _espeak([(i % 10, (i + 7) % 15) for i in range(30)])

#: In the two sets above each espeak-ng variant sings as two singers (two languages, one
#: timbre), a harder task than thirty different voices. The ``distinct`` sets give every singer
#: its *own* variant: espeak-ng's human-sounding variants (its robot, whisper, announcer and
#: effect variants left out), 16 female and 63 male, dealt alternately to test and validation,
#: so no variant is in both; languages cycle over the ten above.
_DISTINCT_FEMALE = ("Alicia", "Andrea", "Annie", "anika", "aunty", "belinda", "f1", "f2", "f3", "f4", "f5",
                    "grandma", "linda", "steph", "steph2", "steph3")
_DISTINCT_MALE = (
    "Alex", "Andy", "AnxiousAndy", "Denis", "Diogo", "Gene", "Gene2", "Henrique", "Hugo", "Jacky", "Lee",
    "Marco", "Mario", "Michael", "Mike", "Nguyen", "RicishayMax", "RicishayMax2", "RicishayMax3", "Storm",
    "Tweaky", "adam", "antonio", "benjamin", "boris", "caleb", "croak", "david", "ed", "edward", "edward2",
    "grandpa", "gustave", "iven", "iven2", "iven3", "iven4", "john", "kaukovalta", "klatt", "klatt2",
    "klatt3", "klatt4", "klatt5", "klatt6", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "marcelo", "max",
    "michel", "miguel", "norbert", "pablo", "paul", "pedro", "quincy", "rob")


def _distinct(part: int) -> tuple[BaseVoice, ...]:
    female = _DISTINCT_FEMALE[part::2][:8]
    male = _DISTINCT_MALE[part::2][:22]
    # Interleave so that every fourth singer or so is female, as in the other sets.
    variants = [(v, True) for v in female] + [(v, False) for v in male]
    order = sorted(range(30), key=lambda i: (i * 11) % 30)
    return tuple(
        BaseVoice(f"espeak_{_EVAL_LANGUAGES[j % 10]}+{variants[i][0]}", _EVAL_LANGUAGES[j % 10],
                  200.0 if variants[i][1] else 110.0, variants[i][1], "espeak-ng")
        for j, i in enumerate(order))


#: Thirty espeak-ng singers, each its own variant (test) / thirty others (validation).
EVALUATION_DISTINCT_VOICES: tuple[BaseVoice, ...] = _distinct(0)
EVALUATION_DISTINCT_VAL_VOICES: tuple[BaseVoice, ...] = _distinct(1)

#: Voice sets for evaluation corpora only (``crossmix corpus --voices independent`` for test,
#: ``independent-val`` for validation; ``distinct`` and ``distinct-val`` likewise).
EVALUATION_VOICE_SETS: dict[str, tuple[BaseVoice, ...]] = {
    "independent": EVALUATION_VOICES, "independent-val": EVALUATION_VAL_VOICES,
    "distinct": EVALUATION_DISTINCT_VOICES, "distinct-val": EVALUATION_DISTINCT_VAL_VOICES}

#: The file an evaluation-only corpus carries in its root folder; training refuses its songs.
EVALUATION_MARKER = "EVALUATION_ONLY"

# Entropy tags that keep the singer and song random streams independent.
_SINGER_STREAM = 0x5161
_SONG_STREAM = 0x5049


@dataclass(frozen=True)
class Singer:
    """One synthetic singer. Frequencies in Hz, times in seconds, pitches as MIDI numbers."""

    index: int
    name: str
    voice: str
    low_note: int            # lowest note of the singing range (MIDI)
    high_note: int           # highest note (MIDI)
    formant_scale: float     # >1 shifts formants up (smaller vocal tract)
    tilt_db_per_octave: float
    breathiness: float       # 0 (clean) .. 1 (whisper-like) added aperiodicity
    vibrato_rate: float      # Hz
    vibrato_depth: float     # cents, peak
    vibrato_onset: float     # s after a note starts before vibrato is full
    portamento: float        # s of glide into each note
    jitter: float            # cents, std of slow random f0 wander

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def singer_name(index: int) -> str:
    """The artist tag of singer ``index``: ``"Singer 017"``."""
    return f"Singer {index:03d}"


def singer_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of singer ``index`` (independent of every song stream)."""
    return np.random.default_rng([seed, index, _SINGER_STREAM])


def song_rng(seed: int, singer: int, song: int) -> np.random.Generator:
    """The random stream of song ``song`` of singer ``singer`` (independent of the singer's)."""
    return np.random.default_rng([seed, singer, song, _SONG_STREAM])


def song_part_rng(seed: int, singer: int, song: int, part: str) -> np.random.Generator:
    """A separate stream per part of a song (``"performance"``, ``"band"``, ``"room"``...), so
    that changing how one part is generated does not reshuffle the others."""
    tag = int.from_bytes(part.encode("utf-8")[:8].ljust(8, b"\0"), "little")
    return np.random.default_rng([seed, singer, song, _SONG_STREAM, tag])


def draw_singer(*, seed: int, index: int, voices: str = "classic") -> Singer:
    """Draw singer ``index`` of corpus ``seed``: a deterministic function of the two only.

    The parameters are continuous, so any number of distinct singers is reachable; with six
    base voices the nearest two of the first thousand singers still differ audibly in range,
    formants or vibrato (see ``tests/test_corpus.py``).
    """
    if index < 0:
        raise ValueError(f"singer index must be >= 0, got {index}")
    sets = VOICE_SETS | EVALUATION_VOICE_SETS
    if voices not in sets:
        raise ValueError(f"unknown voice set {voices!r}: use one of {', '.join(sets)}")
    pool = sets[voices]
    rng = singer_rng(seed, index)
    voice = pool[int(rng.integers(len(pool)))]
    if voices in EVALUATION_VOICE_SETS:  # one base voice per singer, as many as there are
        voice = pool[index % len(pool)]
    # Range centre: female voices around A4 (69), male around A3 (57), with spread.
    centre = (66.0 if voice.female else 54.0) + rng.normal(0.0, 3.0)
    span = int(rng.integers(12, 18))  # an octave to an octave and a half
    low = int(round(centre - span / 2))
    formant = float(np.exp(rng.normal(0.0, 0.07)))
    if voice.female:
        formant *= 1.03
    return Singer(
        index=index,
        name=singer_name(index),
        voice=voice.name,
        low_note=low,
        high_note=low + span,
        formant_scale=round(float(np.clip(formant, 0.82, 1.22)), 4),
        tilt_db_per_octave=round(float(rng.uniform(-3.5, 2.5)), 3),
        breathiness=round(float(rng.beta(1.6, 4.0)), 4),
        vibrato_rate=round(float(rng.uniform(4.5, 7.0)), 3),
        vibrato_depth=round(float(rng.uniform(8.0, 70.0)), 2),
        vibrato_onset=round(float(rng.uniform(0.08, 0.45)), 3),
        portamento=round(float(rng.uniform(0.02, 0.14)), 3),
        jitter=round(float(rng.uniform(0.0, 14.0)), 2),
    )


def base_voice(name: str) -> BaseVoice:
    for v in VOICE_SETS["wide"] + tuple(v for vs in EVALUATION_VOICE_SETS.values() for v in vs):
        if v.name == name:
            return v
    raise KeyError(name)


# --- f0 design ---------------------------------------------------------------------------


def midi_to_hz(midi: F64 | float) -> F64 | float:
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def design_f0(
    *,
    singer: Singer,
    onsets: F64,
    durations: F64,
    pitches: F64,
    legato: npt.NDArray[np.bool_],
    n_frames: int,
    rng: np.random.Generator,
) -> F64:
    """The singer's f0 contour (Hz per WORLD frame) for notes on a synthesis timeline.

    Parameters
    ----------
    onsets, durations : (n_notes,) float, seconds on the synthesis timeline.
    pitches : (n_notes,) float, MIDI note numbers.
    legato : (n_notes,) bool, whether a note glides in from the previous one.
    n_frames : number of WORLD frames (``FRAME_MS`` apart).
    rng : the song's random stream (jitter and vibrato phase differ per performance).

    Returns
    -------
    (n_frames,) float64 f0 in Hz, 0 outside notes.
    """
    t = np.arange(n_frames) * (FRAME_MS / 1000.0)
    cents = np.full(n_frames, np.nan)
    for i, (on, dur, p) in enumerate(zip(onsets, durations, pitches, strict=True)):
        sel = (t >= on) & (t < on + dur)
        if not np.any(sel):
            continue
        tt = t[sel] - on
        c = np.full(tt.shape, 100.0 * p)
        if legato[i] and i > 0:
            prev = 100.0 * pitches[i - 1]
            glide = np.clip(tt / max(singer.portamento, 1e-3), 0.0, 1.0)
            glide = 0.5 - 0.5 * np.cos(np.pi * glide)
            c = prev + (c - prev) * glide
        ramp = np.clip((tt - 0.5 * singer.vibrato_onset) / max(singer.vibrato_onset, 1e-3), 0.0, 1.0)
        phase = rng.uniform(0.0, 2.0 * np.pi)
        c = c + singer.vibrato_depth * ramp * np.sin(2.0 * np.pi * singer.vibrato_rate * tt + phase)
        cents[sel] = c
    # Slow random wander (jitter): low-passed noise, the same length as the contour.
    noise = rng.standard_normal(n_frames + 40)
    kernel = np.hanning(21)
    kernel /= np.sqrt(np.sum(kernel**2))
    wander = np.convolve(noise, kernel, mode="same")[20:20 + n_frames] * singer.jitter
    f0 = np.where(np.isnan(cents), 0.0, midi_to_hz(np.nan_to_num(cents / 100.0 + wander / 100.0)))
    return np.asarray(f0, dtype=np.float64)


# --- re-voicing ------------------------------------------------------------------------


def revoice(
    x: F64,
    *,
    singer: Singer,
    f0_target: F64,
) -> F64:
    """Re-synthesise mono 16 kHz singing ``x`` as ``singer`` singing ``f0_target``.

    Parameters
    ----------
    x : (n,) float64 at :data:`WORLD_SR`.
    f0_target : (frames,) float64 Hz per WORLD frame, 0 where nothing is sung.

    Returns
    -------
    (n',) float64 at :data:`WORLD_SR` (n' is about n).
    """
    sr = WORLD_SR
    f0, t = pyworld.dio(x, sr, frame_period=FRAME_MS, f0_floor=60.0, f0_ceil=800.0)
    f0 = pyworld.stonemask(x, f0, t, sr)
    sp = pyworld.cheaptrick(x, f0, t, sr)
    ap = pyworld.d4c(x, f0, t, sr)
    n = min(len(f0), len(f0_target))
    voiced = f0[:n] > 0
    # Bridge one-frame gaps in the voicing decision so held notes do not crackle.
    voiced = voiced | (np.roll(voiced, 1) & np.roll(voiced, -1))
    new_f0 = np.where(voiced & (f0_target[:n] > 0), f0_target[:n], 0.0)
    sp, ap = sp[:n], ap[:n]

    bins = sp.shape[1]
    freqs = np.linspace(0.0, sr / 2.0, bins)
    # Formant scale: the envelope at f moves to f * scale (interpolated in log power).
    # Same source positions for every frame: linear interpolation as two gathers.
    pos = np.clip(freqs / singer.formant_scale / freqs[1], 0.0, bins - 1.0)
    lo = np.minimum(np.floor(pos).astype(np.int64), bins - 2)
    frac = pos - lo
    log_sp = np.log(np.maximum(sp, 1e-16))
    warped = log_sp[:, lo] * (1.0 - frac) + log_sp[:, lo + 1] * frac
    # Spectral tilt around 1 kHz, in power.
    octaves = np.log2(np.maximum(freqs, 100.0) / 1000.0)
    warped += (singer.tilt_db_per_octave * octaves / 10.0) * np.log(10.0)
    sp = np.exp(warped)
    # Breathiness: more aperiodic energy, more so at high frequencies.
    weight = np.clip(freqs / 4000.0, 0.25, 1.0)
    ap = ap + singer.breathiness * (1.0 - ap) * weight[None, :]
    ap = np.clip(ap, 0.0, 1.0)
    y = pyworld.synthesize(new_f0, np.ascontiguousarray(sp), np.ascontiguousarray(ap), sr,
                           frame_period=FRAME_MS)
    return np.asarray(y, dtype=np.float64)
