"""Synthetic singing corpus: determinism, singers, ground truth checked by independent estimators."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.corpus import (
    generate_corpus,
    load_manifest,
    render_song,
    song_dir,
)
from training.corpus_melody import MAJOR_SCALE, MINOR_SCALE, PITCH_NAMES, draw_plan
from training.corpus_render import VOCAL_BANDWIDTH_HZ, singing_xml
from training.corpus_singers import BASE_VOICES, draw_singer, song_rng

# --- independent estimators (deliberately not core.remix.analysis) --------------------------------

# Krumhansl-Kessler key profiles.
_KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def estimate_key(y: np.ndarray, sr: int) -> tuple[int, str]:
    """Krumhansl-Schmuckler: correlate the mean chroma with the 24 rotated profiles."""
    import librosa

    chroma = librosa.feature.chroma_cqt(y=y, sr=sr).mean(axis=1)
    best = (-2.0, 0, "major")
    for root in range(12):
        for mode, prof in (("major", _KK_MAJOR), ("minor", _KK_MINOR)):
            r = float(np.corrcoef(chroma, np.roll(prof, root))[0, 1])
            if r > best[0]:
                best = (r, root, mode)
    return best[1], best[2]


def estimate_beats(y: np.ndarray, sr: int) -> tuple[float, np.ndarray]:
    """librosa's dynamic-programming beat tracker: (tempo BPM, beat times s)."""
    import librosa

    tempo, beats = librosa.beat.beat_track(y=y, sr=sr, units="time")
    return float(np.atleast_1d(tempo)[0]), np.asarray(beats)


def tempo_ok(estimate: float, truth: float, tol: float = 0.04) -> bool:
    """Within ``tol`` of the truth or of its double/half (the usual metrical ambiguity)."""
    return any(abs(estimate - truth * m) <= tol * truth * m for m in (0.5, 1.0, 2.0))


# --- singers and plans (no audio) ------------------------------------------------------------


def _singer_vector(s) -> np.ndarray:
    return np.array([
        (s.low_note + s.high_note) / 2.0 / 3.0, (s.high_note - s.low_note) / 3.0,
        np.log(s.formant_scale) / 0.07, s.tilt_db_per_octave / 1.5, s.breathiness / 0.15,
        s.vibrato_rate / 0.7, s.vibrato_depth / 15.0, s.vibrato_onset / 0.1, s.portamento / 0.03,
        s.jitter / 4.0,
    ])


def test_singers_are_drawn_from_seed_alone_and_distinct() -> None:
    first = [draw_singer(seed=1, index=i) for i in range(320)]
    again = [draw_singer(seed=1, index=i) for i in reversed(range(320))][::-1]
    assert first == again
    assert draw_singer(seed=2, index=5) != first[5]
    assert first[17].name == "Singer 017"
    assert {s.voice for s in first} == {v.name for v in BASE_VOICES}
    # 320 singers: every pair differs by more than one "just noticeable" step in some way.
    vecs = np.stack([_singer_vector(s) for s in first])
    voices = np.array([s.voice for s in first])
    d = np.sqrt(((vecs[:, None, :] - vecs[None, :, :]) ** 2).sum(-1))
    same_voice = voices[:, None] == voices[None, :]
    d = np.where(same_voice, d, np.inf)
    np.fill_diagonal(d, np.inf)
    assert d.min() > 1.0


def test_song_randomness_is_independent_of_the_singer_stream() -> None:
    s = draw_singer(seed=3, index=4)
    a = draw_plan(singer=s, rng=song_rng(3, 4, 0), seconds=12.0)
    b = draw_plan(singer=s, rng=song_rng(3, 4, 0), seconds=12.0)
    c = draw_plan(singer=s, rng=song_rng(3, 4, 1), seconds=12.0)
    assert a.to_json() == b.to_json()
    assert a.to_json() != c.to_json()
    # Drawing the singer does not consume the song's stream, and vice versa.
    assert draw_singer(seed=3, index=4) == s


def test_plan_melody_fits_singer_key_and_beat_grid() -> None:
    for i in range(40):
        singer = draw_singer(seed=11, index=i)
        plan = draw_plan(singer=singer, rng=song_rng(11, i, 0), seconds=20.0)
        scale = MAJOR_SCALE if plan.key_mode == "major" else MINOR_SCALE
        assert 80 <= plan.tempo <= 140
        assert plan.notes, "every song has a sung melody"
        assert np.allclose(np.diff(plan.beats), 60.0 / plan.tempo, atol=2e-6)
        assert plan.downbeats == plan.beats[::4]
        for n in plan.notes:
            assert singer.low_note <= n.pitch <= singer.high_note
            assert (n.pitch - plan.key_root) % 12 in scale
            assert 0.0 < n.onset and n.onset + n.duration <= plan.seconds
            # Onsets fall on the eighth-note grid.
            eighths = n.onset / (30.0 / plan.tempo)
            assert abs(eighths - round(eighths)) < 1e-4
        onsets = [n.onset for n in plan.notes]
        assert onsets == sorted(onsets)
        assert all(a.onset + a.duration <= b.onset + 2e-6 for a, b in itertools.pairwise(plan.notes))
        assert plan.key == f"{PITCH_NAMES[plan.key_root]} {plan.key_mode}"


def test_singing_xml_has_rests_and_one_syllable_per_note() -> None:
    singer = draw_singer(seed=5, index=0)
    plan = draw_plan(singer=singer, rng=song_rng(5, 0, 0), seconds=12.0)
    xml = singing_xml(plan.notes, natural_f0=150.0)
    assert xml.count("<PITCH ") == len(plan.notes)
    assert xml.count("<REST ") >= 1  # at least the instrumental first bar
    # Festival sings near its natural pitch; the real pitch is imposed by WORLD.
    freqs = [float(x.split('"')[0]) for x in xml.split('FREQ="')[1:]]
    assert all(150.0 / np.sqrt(2) - 1 <= f <= 150.0 * np.sqrt(2) + 1 for f in freqs)


# --- audio ---------------------------------------------------------------------------------


def _tree_hash(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_tiny_corpus_is_bit_identical_on_rerun_and_resumes(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    rep = generate_corpus(out_dir=a, seed=9, singers=2, songs=1, seconds=6.0, first_singer=40)
    assert rep.songs_written == 2 and rep.songs_skipped == 0
    generate_corpus(out_dir=b, seed=9, singers=2, songs=1, seconds=6.0, first_singer=40, jobs=2)
    ha, hb = _tree_hash(a), _tree_hash(b)
    assert set(ha) == {"corpus.json", "manifest.csv"} | {
        f"singer_{i:03d}/song_00/{n}" for i in (40, 41)
        for n in ("mix.flac", "vocals.flac", "accompaniment.flac", "truth.json")}
    assert ha == hb  # a fresh synth per render, nothing depends on the process or the run
    again = generate_corpus(out_dir=a, seed=9, singers=2, songs=1, seconds=6.0, first_singer=40)
    assert again.songs_written == 0 and again.songs_skipped == 2
    assert _tree_hash(a) == ha
    manifest = load_manifest(a)
    assert [(e["singer"], e["song"]) for e in manifest["songs"]] == [(40, 0), (41, 0)]
    # training.dataset reads the folder as songs labelled by singer, with vocal stems.
    from training.dataset import load_dataset

    ds = load_dataset(a)
    assert ds.singers == ["Singer 040", "Singer 041"]
    assert all(s.vocals is not None and s.vocals.name == "vocals.flac" for s in ds.songs)


@pytest.mark.slow
def test_song_files_stems_tags_and_common_vocal_bandwidth(tmp_path: Path) -> None:
    from mutagen.flac import FLAC

    generate_corpus(out_dir=tmp_path, seed=4, singers=1, songs=1, seconds=8.0)
    folder = song_dir(tmp_path, 0, 0)
    truth = json.loads((folder / "truth.json").read_text())
    mix, sr = sf.read(folder / "mix.flac", always_2d=True)
    voc, _ = sf.read(folder / "vocals.flac", always_2d=True)
    acc, _ = sf.read(folder / "accompaniment.flac", always_2d=True)
    assert sr == 44100 and mix.shape == (8 * 44100, 2) == voc.shape == acc.shape
    assert np.max(np.abs(mix - (voc + acc))) < 1e-5  # 24-bit quantisation only
    assert np.sqrt(np.mean(voc**2)) > 0.01 and np.sqrt(np.mean(acc**2)) > 0.01
    tags = FLAC(folder / "mix.flac")
    assert tags["ARTIST"] == [truth["artist"]] == ["Singer 000"]
    assert tags["TITLE"] == [truth["title"]]
    assert float(tags["BPM"][0]) == truth["tempo"]
    assert tags["KEY"] == [truth["key"]]
    assert truth["singer"] == draw_singer(seed=4, index=0).to_json()
    # The sung notes in the ground truth are what the vocal stem sings: YIN pitch over the
    # steady part of each note, median error under 25 cents, most notes within 50 cents.
    import librosa

    v = librosa.resample(voc.mean(axis=1), orig_sr=sr, target_sr=22050)
    f0 = librosa.yin(v, fmin=60, fmax=1000, sr=22050, frame_length=2048, hop_length=256)
    times = librosa.times_like(f0, sr=22050, hop_length=256)
    errs = []
    for n in truth["notes"]:
        sel = (times > n["onset"] + 0.3 * n["duration"]) & (times < n["onset"] + 0.9 * n["duration"])
        if sel.sum() >= 3:
            errs.append(abs(1200 * np.log2(np.median(f0[sel]) / 440.0) + 6900 - 100 * n["pitch"]))
    assert len(errs) >= 4
    assert np.median(errs) < 25 and np.mean(np.array(errs) < 50) >= 0.7, np.round(errs)


def _band_energy_ratio(x: np.ndarray, sr: int, above: float) -> float:
    spec = np.abs(np.fft.rfft(x.mean(axis=0))) ** 2
    f = np.fft.rfftfreq(x.shape[1], 1.0 / sr)
    return float(spec[f > above].sum() / spec.sum())


@pytest.mark.slow
def test_every_base_voice_ends_with_the_same_bandwidth() -> None:
    # Festival's voices run at 22.05, 32 and 44.1 kHz; none may be told apart by bandwidth.
    by_voice: dict[str, int] = {}
    i = 0
    while len(by_voice) < 3:
        v = draw_singer(seed=21, index=i).voice
        if v in ("czech_ph", "czech_dita", "hy_fi_mv_diphone"):  # 44.1, 32, 22.05 kHz natively
            by_voice.setdefault(v, i)
        i += 1
    for voice, idx in by_voice.items():
        song = render_song(seed=21, singer=idx, song=0, seconds=6.0)
        v = song.vocals.samples
        assert _band_energy_ratio(v, 44100, VOCAL_BANDWIDTH_HZ + 1000.0) < 1e-5, voice
        assert _band_energy_ratio(v, 44100, 3000.0) > 1e-3, voice  # not muffled either


@pytest.mark.slow
def test_ground_truth_tempo_and_key_are_recovered_by_independent_estimators() -> None:
    # Four songs of the fixed seed-7 corpus (pop, pop, rock, bossa): tempo by librosa's beat
    # tracker within 4 % (or its double/half), key by chroma + Krumhansl profiles exactly.
    for singer in range(4):
        song = render_song(seed=7, singer=singer, song=0, seconds=15.0)
        y = song.mix.samples.mean(axis=0)
        truth = song.truth
        tempo, est_beats = estimate_beats(y, 44100)
        assert tempo_ok(tempo, truth["tempo"]), (truth["style"], tempo, truth["tempo"])
        assert estimate_key(y, 44100) == (truth["key_root"], truth["key_mode"]), truth["key"]
        # The ground-truth beat grid sits where the tracker hears beats (or half-beats when
        # it counts double time): median distance under 40 ms.
        grid = np.asarray(truth["beats"])
        if tempo > 1.5 * truth["tempo"]:
            grid = np.sort(np.concatenate([grid, grid + 30.0 / truth["tempo"]]))
        est = est_beats[(est_beats > 1.0) & (est_beats < truth["seconds"] - 1.0)]
        dist = np.abs(est[:, None] - grid[None, :]).min(axis=1)
        assert np.median(dist) < 0.04, (truth["style"], np.median(dist))


@pytest.mark.slow
def test_demo_songs_are_built_once_as_plain_tagged_files(tmp_path: Path) -> None:
    from mutagen.flac import FLAC

    from training.demo import build_demo_songs

    rep = build_demo_songs(root=tmp_path, singers=1, songs_per_singer=2, seconds=5.0, jobs=1)
    files = sorted(rep.songs_dir.glob("*.flac"))
    assert rep.songs == 2 and rep.generated == 2 and len(files) == 2
    assert all(f.name.startswith("Singer 900 - 0") for f in files)
    assert [FLAC(f)["ARTIST"] for f in files] == [["Singer 900"], ["Singer 900"]]
    (rep.songs_dir / "stale.flac").write_bytes(b"x")
    before = {f.name: f.stat().st_mtime_ns for f in files}
    again = build_demo_songs(root=tmp_path, singers=1, songs_per_singer=2, seconds=5.0, jobs=1)
    assert again.generated == 0
    assert {f.name: f.stat().st_mtime_ns for f in rep.songs_dir.glob("*.flac")} == before


def test_cli_rejects_bad_arguments_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli import main

    assert main(["corpus", "--singers", "0", "--songs", "1", "-o", str(tmp_path)]) == 1
    assert "at least one singer" in capsys.readouterr().err
    assert main(["corpus", "--singers", "1", "--songs", "1", "--seconds", "2", "-o", str(tmp_path)]) == 1
    assert "at least 4 s" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_generates_and_reports_speed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli import main

    assert main(["corpus", "--singers", "1", "--songs", "1", "--seconds", "5", "--seed", "3",
                 "--first-singer", "7", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 songs generated" in out and "songs/s" in out
    assert (song_dir(tmp_path, 7, 0) / "mix.flac").is_file()
    assert load_manifest(tmp_path)["songs"][0]["artist"] == "Singer 007"


def test_extended_voice_set_adds_voices_and_leaves_classic_corpora_alone() -> None:
    from training.corpus_singers import EXTRA_VOICES, VOICE_SETS

    ext = [draw_singer(seed=1, index=i, voices="extended") for i in range(300)]
    assert {s.voice for s in ext} == {v.name for v in VOICE_SETS["extended"]}
    assert not {v.name for v in EXTRA_VOICES} & {v.name for v in BASE_VOICES}
    # The classic set is the default and draws exactly what earlier corpora drew.
    assert [draw_singer(seed=1, index=i) for i in range(50)] == \
        [draw_singer(seed=1, index=i, voices="classic") for i in range(50)]
    assert all(s.voice not in {v.name for v in EXTRA_VOICES} for s in (draw_singer(seed=1, index=i) for i in range(300)))
    with pytest.raises(ValueError, match="unknown voice set"):
        draw_singer(seed=1, index=0, voices="espeak")


@pytest.mark.slow
def test_every_extra_voice_sings_in_time_and_band_limited(tmp_path: Path) -> None:
    from training.corpus_singers import EXTRA_VOICES

    found: dict[str, int] = {}
    i = 0
    while len(found) < len(EXTRA_VOICES):
        v = draw_singer(seed=21, index=i, voices="extended").voice
        if v in {x.name for x in EXTRA_VOICES}:
            found.setdefault(v, i)
        i += 1
    for voice, idx in found.items():
        song = render_song(seed=21, singer=idx, song=0, seconds=6.0, voices="extended")
        assert song.truth["voices"] == "extended" and song.truth["singer"]["voice"] == voice
        v = song.vocals.samples
        assert np.sqrt(np.mean(v ** 2)) > 1e-3, voice  # it sang
        assert _band_energy_ratio(v, 44100, VOCAL_BANDWIDTH_HZ + 1000.0) < 1e-5, voice


def test_speech_voice_sets_are_real_speakers_and_never_espeak() -> None:
    from training.corpus_singers import SPEECH_VOICES, VOICE_SETS

    drawn = {draw_singer(seed=3, index=i, voices="speech").voice for i in range(60)}
    assert drawn == {v.name for v in SPEECH_VOICES}
    assert all(v.engine in ("flite", "festival-speech") for v in SPEECH_VOICES)
    assert {v.name for v in VOICE_SETS["wide"]} == {v.name for s in ("extended", "speech") for v in VOICE_SETS[s]}
    every = [v.name.lower() for s in VOICE_SETS.values() for v in s]
    assert not [n for n in every if "espeak" in n or n.startswith("mb-")]


@pytest.mark.slow
def test_speech_voices_say_each_syllable_on_its_note(tmp_path: Path) -> None:
    """A speech-only voice is stretched onto the notes: sound inside the notes, silence
    between them, and each speech voice renders a whole band-limited song."""
    from training.corpus_melody import Note
    from training.corpus_render import speech_sing
    from training.corpus_singers import SPEECH_VOICES, WORLD_SR

    notes = [Note(0.5, 0.6, 60, "la", 0, False), Note(1.6, 0.9, 62, "mo", 0, False),
             Note(3.0, 0.5, 64, "ki", 0, False)]
    for voice in SPEECH_VOICES:
        work = tmp_path / voice.name
        work.mkdir()
        x = speech_sing(notes, voice=voice, workdir=work, seconds=4.0)
        assert abs(len(x) / WORLD_SR - 4.0) < 0.05, voice.name

        def rms(a: float, b: float, x: np.ndarray = x) -> float:
            return float(np.sqrt(np.mean(x[int(a * WORLD_SR):int(b * WORLD_SR)] ** 2)))

        inside = min(rms(0.55, 1.05), rms(1.7, 2.4), rms(3.05, 3.45))
        outside = max(rms(0.0, 0.45), rms(2.55, 2.95), rms(3.55, 4.0))
        assert inside > 30 * outside, (voice.name, inside, outside)
    found: dict[str, int] = {}
    i = 0
    while len(found) < len(SPEECH_VOICES):
        found.setdefault(draw_singer(seed=3, index=i, voices="speech").voice, i)
        i += 1
    for voice, idx in found.items():
        song = render_song(seed=3, singer=idx, song=0, seconds=4.0, voices="speech")
        assert song.truth["singer"]["voice"] == voice
        v = song.vocals.samples
        assert np.sqrt(np.mean(v ** 2)) > 1e-3, voice
        assert _band_energy_ratio(v, 44100, VOCAL_BANDWIDTH_HZ + 1000.0) < 1e-5, voice


def test_the_independent_voice_set_is_espeak_only_and_one_voice_per_singer() -> None:
    from training.corpus_singers import EVALUATION_VOICE_SETS, EVALUATION_VOICES, VOICE_SETS

    drawn = [draw_singer(seed=101, index=i, voices="independent").voice for i in range(30)]
    assert len(set(drawn)) == 30 == len(EVALUATION_VOICES)
    assert all(v.engine == "espeak-ng" for v in EVALUATION_VOICES)
    training_voices = {v.name for s in VOICE_SETS.values() for v in s}
    assert not training_voices & {v.name for v in EVALUATION_VOICES}
    assert not set(VOICE_SETS) & set(EVALUATION_VOICE_SETS)
    val = {v.name for v in EVALUATION_VOICE_SETS["independent-val"]}
    assert len(val) == 30 and not val & {v.name for v in EVALUATION_VOICES} and not val & training_voices


def test_the_distinct_voice_sets_give_every_singer_its_own_espeak_variant() -> None:
    """``distinct`` / ``distinct-val``: 30 singers, 30 espeak-ng variants each, none shared
    between the two sets, every variant a real file of the installed espeak-ng (espeak-ng
    falls back to its default voice without a word for an unknown variant)."""
    import shutil
    import subprocess

    from training.corpus_singers import EVALUATION_VOICE_SETS, VOICE_SETS

    training_voices = {v.name for s in VOICE_SETS.values() for v in s}
    variants = {}
    for name in ("distinct", "distinct-val"):
        voices = EVALUATION_VOICE_SETS[name]
        drawn = [draw_singer(seed=5, index=i, voices=name).voice for i in range(30)]
        assert sorted(drawn) == sorted(v.name for v in voices)
        variants[name] = {v.name.split("+")[1] for v in voices}
        assert len(variants[name]) == 30
        assert all(v.engine == "espeak-ng" for v in voices) and not training_voices & set(drawn)
        assert 6 <= sum(v.female for v in voices) <= 10
    assert not variants["distinct"] & variants["distinct-val"]
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed")
    listed = subprocess.run([exe, "--voices=variant"], capture_output=True, text=True,
                            check=True).stdout.split()
    files = {w.removeprefix("!v/") for w in listed if w.startswith("!v/")}
    assert variants["distinct"] | variants["distinct-val"] <= files


@pytest.mark.slow
def test_an_espeak_corpus_sings_and_training_refuses_it(tmp_path: Path) -> None:
    """espeak-ng voices make an evaluation corpus; no training run may read its songs, also
    when a manifest in another folder lists them."""
    from core.errors import TrainingError
    from training.corpus import generate_corpus
    from training.corpus_singers import EVALUATION_MARKER
    from training.trainer import TrainConfig, train

    out = tmp_path / "independent"
    generate_corpus(out_dir=out, seed=101, singers=2, songs=1, seconds=4.0, voices="independent")
    assert (out / EVALUATION_MARKER).is_file()
    voc, sr = sf.read(str(out / "singer_001" / "song_00" / "vocals.flac"))
    assert sr == 44100 and np.sqrt(np.mean(voc ** 2)) > 1e-3  # it sang
    with pytest.raises(TrainingError, match="evaluation-only"):
        train(TrainConfig(data=str(out), out=str(tmp_path / "run"), device="cpu"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for truth in out.rglob("truth.json"):
        truth.unlink()  # the folder's marker alone still counts
    (elsewhere / "manifest.csv").write_text(
        "path,singer\n" + "".join(f"{p},S{i}\n" for i, p in enumerate(sorted(out.rglob("mix.flac")))),
        encoding="utf-8")
    with pytest.raises(TrainingError, match="evaluation-only"):
        train(TrainConfig(data=str(elsewhere), out=str(tmp_path / "run2"), device="cpu"))
