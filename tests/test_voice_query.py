"""A voice as the query (issue 15): a-cappella detection, vocal-only queries that skip the
separation, the tempo of a voice (estimated, typed, tapped) driving the cross-mix's beat grid,
and a region of a song as the query. Real files and real DSP; tiny random-weight encoders and
separators where the weights do not matter, Deezer's Spleeter where they do (detection)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from synth_songs import SR, make_song

from core.api import Crossmix
from core.audio.decode import Audio, load_audio
from core.audio.region import RegionError, check_region
from core.embedding.encoders import EncoderPair
from core.embedding.song import embed_song
from core.errors import CrossmixError, RemixError
from core.library.library import Library
from core.remix.analysis import analyze
from core.remix.render import RemixOptions, render_cross_mix
from core.remix.vocal_tempo import (
    check_bpm,
    estimate_vocal_tempo,
    given_grid,
    grid_analysis,
    tap_bpm,
)
from core.separation.separator import Separator, StemCache
from core.separation.vocal_only import (
    VOCAL_ONLY_THRESHOLD_DB,
    detect_vocal_only,
    probe_excerpts,
    vocal_only_stems,
)
from gui.engine import Session


class CountingSeparator(Separator):
    """A tiny random-weight separator that counts its separations."""

    calls = 0

    def separate(self, audio: Any, **kw: Any) -> Any:  # type: ignore[override]
        type(self).calls += 1
        return super().separate(audio, **kw)


def counting_separator() -> CountingSeparator:
    base = Separator.tiny(seed=0)
    CountingSeparator.calls = 0
    return CountingSeparator(base._nets, model_id=base.model_id, name=base.name)


def write(path: Path, audio: Audio) -> Path:
    sf.write(path, audio.samples.T, audio.sr)
    return path


@pytest.fixture(scope="module")
def song():
    """A 16-s generated song at 100 BPM, first beat at 0.45 s: mix, vocal, accompaniment."""
    return make_song(tempo=100.0, key_root=9, key_mode="minor", seconds=16.0, seed=21,
                     first_beat=0.45)


@pytest.fixture(scope="module")
def match():
    return make_song(tempo=121.0, key_root=2, key_mode="major", seconds=24.0, seed=22,
                     first_beat=0.8)


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """Three generated mixes scanned (fast mode) with the tiny encoders."""
    root = tmp_path_factory.mktemp("voice-lib")
    (root / "songs").mkdir()
    for i, tempo in enumerate((96.0, 112.0, 124.0)):
        s = make_song(tempo=tempo, key_root=i * 3, seconds=8.0, seed=40 + i)
        write(root / "songs" / f"song{i}.wav", s.mix)
    with Library.open(root / "lib", separator=Separator.tiny(), encoders=EncoderPair.tiny()) as lib:
        lib.add_paths([root / "songs"])
        assert lib.scan(mode="fast").indexed == 3
    return root / "lib"


# --- a-cappella detection ------------------------------------------------------------------


@pytest.mark.slow
def test_a_real_mix_is_separated_and_its_vocal_is_recognised_as_a_voice(example_clip) -> None:
    sep = Separator.spleeter_2stems()
    clip = load_audio(example_clip)
    mix = detect_vocal_only(clip, sep)
    assert not mix.vocal_only and mix.accompaniment_db > VOCAL_ONLY_THRESHOLD_DB + 5, mix
    voice = detect_vocal_only(sep.separate(clip).vocals, sep)
    assert voice.vocal_only and voice.accompaniment_db < VOCAL_ONLY_THRESHOLD_DB, voice
    assert "voice alone" in voice.describe() and "a mix" in mix.describe()
    # the probe is at most one Spleeter segment, even for a long song
    long = Audio(np.tile(clip.samples, 6), clip.sr)
    spans = probe_excerpts(long)
    assert len(spans) == 3 and sum(b - a for a, b in spans) < 11.8


@pytest.mark.slow
def test_a_generated_song_its_vocal_and_its_accompaniment(tmp_path) -> None:
    """The corpus generator's first demo song (Festival + WORLD voice over General MIDI):
    its vocal stem is a voice alone, its mix and its accompaniment are not."""
    from training.corpus import generate_corpus, song_dir
    from training.demo import DEMO_FIRST_SINGER, DEMO_SECONDS, DEMO_SEED

    generate_corpus(out_dir=tmp_path, seed=DEMO_SEED, singers=1, songs=1, seconds=DEMO_SECONDS,
                    first_singer=DEMO_FIRST_SINGER, jobs=1)
    folder = song_dir(tmp_path, DEMO_FIRST_SINGER, 0)
    sep = Separator.spleeter_2stems()
    found = {k: detect_vocal_only(load_audio(folder / f"{k}.flac"), sep)
             for k in ("vocals", "mix", "accompaniment")}
    assert found["vocals"].vocal_only, found
    assert not found["mix"].vocal_only and not found["accompaniment"].vocal_only, found
    assert found["mix"].accompaniment_db > VOCAL_ONLY_THRESHOLD_DB + 2


def test_vocal_only_stems_are_the_file_itself(song) -> None:
    stems = vocal_only_stems(song.vocals)
    assert stems.mix.sr == 44100 and stems.vocals.channels == 2
    np.testing.assert_array_equal(stems.vocals.samples, stems.mix.samples)
    assert not np.any(stems.accompaniment.samples)


# --- vocal-only queries ----------------------------------------------------------------------


def test_vocal_only_query_skips_the_separation_and_embeds_the_file(tmp_path, song, library) -> None:
    path = write(tmp_path / "take.wav", song.vocals)
    enc = EncoderPair.tiny()
    sep = counting_separator()
    with Crossmix(library=Library.open(library), separator=sep, encoders=enc) as cx:
        qe = cx.embed_query(path, vocal_only=True)
        assert CountingSeparator.calls == 0 and qe.vocal_only and qe.vocal_check is None
        own = embed_song(mix=vocal_only_stems(load_audio(path)).mix,
                         vocals=vocal_only_stems(load_audio(path)).vocals, encoders=enc)
        np.testing.assert_allclose(qe.embedding.V, own.V, atol=1e-6)
        # detection (the default) measures the probe in the song's one separation
        auto = cx.embed_query(path)
        assert CountingSeparator.calls == 1 and auto.vocal_check is not None
        res = cx.library().search(cx.embed_query(path, vocal_only=True), k=2)
        assert res.query_vocal_only and len(res.matches) == 2
        assert res.to_json()["query_vocal_only"] is True


def test_session_query_of_a_take_with_a_known_tempo(tmp_path, song, library) -> None:
    """The entry point a recorded take uses: vocal_only and a metronome's tempo."""
    path = write(tmp_path / "take.wav", song.vocals)
    sep = counting_separator()
    session = Session(separator_factory=lambda d: sep, encoders_factory=lambda d: EncoderPair.tiny(),
                      library_factory=lambda: Library.open(library),
                      stem_cache=StemCache(tmp_path / "stems"), duplicate_threshold=1.5)
    try:
        r = session.query(path, vocal_only=True, tempo=100.0, first_beat=0.45, k=3)
        assert CountingSeparator.calls == 0 and r.vocal_only and len(r.rows) == 3
        session.analyze(r)
        assert r.tempo_source == "given" and r.analysis.tempo == 100.0
        assert r.analysis.tempo_confidence == 1.0
        np.testing.assert_allclose(r.analysis.beats[:3], [0.45, 1.05, 1.65])
        np.testing.assert_allclose(r.analysis.downbeats[:2], [0.45, 2.85])
        assert all(row.stretch_percent is not None for row in r.rows)
        # a typed tempo re-grids the query and the matches' stretch follows
        before = {row.path: row.stretch_percent for row in r.rows}
        session.set_tempo(r, 80.0, source="typed")
        assert r.tempo_source == "typed" and r.analysis.tempo == 80.0
        assert {row.path: row.stretch_percent for row in r.rows} != before
        session.set_tempo(r, None)  # back to the estimate (here the metronome's grid)
        assert r.analysis.tempo == 100.0
        with pytest.raises(RemixError, match="out of range"):
            session.set_tempo(r, 1000.0)
        # a voice without a known tempo: estimated from its onsets, with a confidence
        r2 = session.query(path, vocal_only=True, k=3)
        session.analyze(r2)
        assert r2.tempo_source == "onsets"
        assert r2.analysis.tempo == pytest.approx(100.0, rel=0.02)
        assert r2.analysis.tempo_confidence > 0.5
    finally:
        session.close()


# --- the tempo of a voice --------------------------------------------------------------------


@pytest.mark.parametrize("tempo", [84.0, 121.0])
def test_vocal_tempo_from_onsets(tempo) -> None:
    s = make_song(tempo=tempo, key_root=4, seconds=14.0, seed=5, first_beat=0.3)
    est = estimate_vocal_tempo(s.vocals)
    assert est.bpm == pytest.approx(tempo, rel=0.02)
    assert abs(est.first_beat - 0.3) < 0.03 and est.confidence > 0.5
    # noise has onsets, but none on a grid
    rng = np.random.default_rng(0)
    noise = Audio((0.1 * rng.standard_normal((1, 14 * SR)) * (rng.random((1, 14 * SR)) > 0.7))
                  .astype(np.float32), SR)
    assert estimate_vocal_tempo(noise).confidence < est.confidence - 0.3


def test_tap_tempo() -> None:
    assert tap_bpm([1.0]) is None
    assert tap_bpm([0.0, 0.6, 1.2, 1.8]) == pytest.approx(100.0)
    # one late tap does not pull the median; a pause starts a new count
    assert tap_bpm([0.0, 0.6, 1.25, 1.8, 2.4]) == pytest.approx(100.0, abs=0.5)
    assert tap_bpm([0.0, 0.6, 1.5, 1.8, 2.4, 3.0]) == pytest.approx(100.0, abs=0.01)
    assert tap_bpm([0.0, 0.5, 1.0, 5.0, 5.6, 6.2]) == pytest.approx(100.0)
    with pytest.raises(RemixError, match="out of range"):
        check_bpm(5)


def _hits(x: np.ndarray, expected: np.ndarray, half_window: float) -> np.ndarray:
    """Time of the energy peak (5 ms smoothing) within +/-half_window of each expected time."""
    e = np.convolve(np.mean(x, axis=0) ** 2, np.ones(220) / 220, mode="same")
    out = []
    for b in expected:
        lo, hi = max(0, int((b - half_window) * SR)), min(e.size, int((b + half_window) * SR))
        out.append((lo + int(np.argmax(e[lo:hi]))) / SR)
    return np.array(out)


def _grid_error(cm: Any, grid: np.ndarray, match: Any, shift: float = 0.0) -> np.ndarray:
    """|where the match's beats land - where the grid (+ shift) says| for inner beats.

    A beat is found by its drum hit; ``bias`` is where a hit lies from the match's beat as
    its analysis tracked it (the renderer lays the *tracked* beats on the grid; the tracker's
    own error against the generator's truth is test_analysis's business)."""
    hw = 0.2 * 60.0 / 121.0
    tracked = analyze(match.mix).beats[1:-1]
    bias = float(np.median(_hits(match.accompaniment.samples, tracked, hw) - tracked))
    qb = grid - cm.start_s + shift
    qb = qb[(qb > 0.6) & (qb < cm.mix.duration - 1.2)]
    return np.abs(_hits(cm.accompaniment.samples, qb, hw) - bias - qb)


def test_typed_and_tapped_tempo_drive_the_cross_mix_beat_grid(song, match) -> None:
    """The accompaniment's beats land within 20 ms of the grid of a typed or tapped tempo."""
    base = analyze(song.vocals)
    m_an = analyze(match.mix)
    taps = 0.45 + 0.6 * np.arange(8) + np.array([0, 8, -6, 4, -9, 2, 7, -3]) / 1000
    for bpm in (100.0, tap_bpm(taps)):
        assert bpm == pytest.approx(100.0, rel=0.005)
        q_an = given_grid(base, song.vocals, bpm=bpm)  # phase fitted to the onsets
        assert abs(q_an.beats[0] - 0.45) < 0.02
        opts = RemixOptions(preview=False, align_downbeats=False)
        cm = render_cross_mix(query_vocals=song.vocals, query_analysis=q_an,
                              match_accompaniment=match.accompaniment, match_analysis=m_an,
                              options=opts)
        err = _grid_error(cm, q_an.beats, match)
        assert err.size >= 15 and np.max(err) < 0.020, err
    # the nudges: a bar offset of one beat and 60 ms later land the beats there
    q_an = grid_analysis(base, bpm=100.0, first_beat=0.45, confidence=1.0)
    cm = render_cross_mix(query_vocals=song.vocals, query_analysis=q_an,
                          match_accompaniment=match.accompaniment, match_analysis=m_an,
                          options=RemixOptions(preview=False, align_downbeats=False,
                                               bar_offset_beats=1, offset_ms=60.0))
    err = _grid_error(cm, q_an.beats, match, shift=0.060)
    assert np.median(err) < 0.015 and np.max(err) < 0.030, err
    assert np.median(_grid_error(cm, q_an.beats, match)) > 0.045  # not where they were
    # (one beat later is still on a grid beat: the bar lines moved by one accompaniment beat)
    plans = [render_cross_mix(query_vocals=song.vocals, query_analysis=q_an,
                              match_accompaniment=match.accompaniment, match_analysis=m_an,
                              options=RemixOptions(preview_seconds=8.0, bar_offset_beats=d)).report
             for d in (0, 1)]
    assert plans[0].tempo_multiplier == 1.0
    assert plans[0].match_beat_offset - plans[1].match_beat_offset == pytest.approx(1.0)


# --- a region of a song -----------------------------------------------------------------------


def test_region_checks_say_what_is_wrong() -> None:
    assert check_region(2.0, 8.0, 16.0) == (2.0, 8.0)
    assert check_region(None, None, 16.0) == (0.0, 16.0)
    for (a, b), words in {(8.0, 2.0): "before it starts", (2.0, 30.0): "after the end",
                          (20.0, None): "after the end", (-1.0, 5.0): "negative",
                          (2.0, 3.0): "at least 3 s"}.items():
        with pytest.raises(RegionError, match=words):
            check_region(a, b, 16.0, name="song.wav")


def test_a_region_query_embeds_only_the_region(tmp_path, song, library) -> None:
    path = write(tmp_path / "song.wav", song.mix)
    enc = EncoderPair.tiny()
    sep = Separator.tiny()
    with Crossmix(library=Library.open(library), separator=sep, encoders=enc) as cx:
        qe = cx.embed_query(path, region=(4.0, 10.0), vocal_only=False)
        assert qe.region == (4.0, 10.0) and qe.duration == pytest.approx(6.0)
        stems = sep.separate(load_audio(path))
        a, b = 4 * 44100, 10 * 44100
        own = embed_song(mix=Audio(stems.mix.samples[:, a:b], 44100),
                         vocals=Audio(stems.vocals.samples[:, a:b], 44100), encoders=enc)
        np.testing.assert_allclose(qe.embedding.M, own.M, atol=1e-5)
        whole = cx.embed_query(path, vocal_only=False)
        assert not np.allclose(whole.embedding.M, qe.embedding.M, atol=1e-4)


def test_session_region_search_and_preview_start(tmp_path, song, library) -> None:
    path = write(tmp_path / "song.wav", song.mix)
    session = Session(separator_factory=lambda d: Separator.tiny(device=d),
                      encoders_factory=lambda d: EncoderPair.tiny(),
                      library_factory=lambda: Library.open(library),
                      stem_cache=StemCache(tmp_path / "stems"), duplicate_threshold=1.5)
    try:
        r = session.query(path, k=3, vocal_only=False)
        whole = r.embedding
        session.analyze(r)
        session.search_region(r, (5.0, 11.0), space="vocal->mix", k=3)
        assert r.region == (5.0, 11.0) and len(r.rows) == 3
        assert not np.allclose(r.embedding.V, whole.V, atol=1e-4)
        p = session.preview(r, r.rows[0], options=RemixOptions(preview_seconds=30.0))
        assert p.crossmix.start_s == pytest.approx(5.0, abs=0.01)
        assert p.crossmix.mix.duration == pytest.approx(6.0, abs=0.01)
        session.search_region(r, None, space="vocal->mix", k=3)
        assert r.region is None and r.embedding is whole
        with pytest.raises(RegionError, match="before it starts"):
            session.search_region(r, (9.0, 2.0), space="vocal->mix", k=3)
    finally:
        session.close()


# --- the command line --------------------------------------------------------------------------


def test_cli_match_vocal_only_region_and_bad_ranges(tmp_path, song, library, capsys,
                                                     monkeypatch) -> None:
    from cli import main

    take = write(tmp_path / "take.wav", song.vocals)
    tiny = ["--library", str(library), "--encoders", "tiny", "--separator", "tiny"]

    def no_separation(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("--vocal-only must not separate")

    with monkeypatch.context() as m:
        m.setattr(Separator, "separate", no_separation)
        assert main(["match", str(take), "--vocal-only", "--start", "1", "--end", "9",
                     "--json", *tiny]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["query_vocal_only"] is True and doc["query_region"] == [1.0, 9.0]
    assert len(doc["matches"]) == 3
    assert main(["match", str(take), "--start", "2", *tiny]) == 0
    out = capsys.readouterr().out
    assert "query: Recognised as a mix" in out and "only 2.0-16.0 s embedded" in out
    for args, words in ((["--start", "9", "--end", "4"], "before it starts"),
                        (["--end", "40"], "after the end"),
                        (["--start", "3", "--end", "4"], "at least 3 s")):
        assert main(["match", str(take), *args, *tiny]) == 1
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err


def test_cli_remix_vocal_only_with_a_tempo_and_offsets(tmp_path, song, match, capsys) -> None:
    from cli import main

    take = write(tmp_path / "take.wav", song.vocals)
    other = write(tmp_path / "other.wav", match.mix)
    out = tmp_path / "cm.wav"
    base = ["remix", str(take), str(other), "--model", "tiny", "--no-cache", "--device", "cpu",
            "--preview-seconds", "8", "--json"]
    assert main([*base, "-o", str(out), "--vocal-only", "--bpm", "100", "--first-beat", "0.45",
                 "--bar-offset", "1", "--offset-ms", "-20"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["query"]["vocal_only"] is True and doc["query"]["tempo_source"] == "given"
    assert doc["query"]["analysis"]["tempo"] == 100.0
    assert doc["query"]["analysis"]["beats"][:2] == [0.45, 1.05]
    assert load_audio(out).duration == pytest.approx(8.0, abs=0.01)
    for args, words in ((["--bpm", "5"], "out of range"),
                        (["--first-beat", "0.3"], "give --bpm too")):
        assert main([*base, "-o", str(tmp_path / "x.wav"), *args]) == 1
        assert words in capsys.readouterr().err
    with pytest.raises(CrossmixError):
        check_bpm("fast")
