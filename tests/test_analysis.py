"""Analysis on generated songs with known tempo, beats, bars and key (the real tracker runs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from synth_songs import SR, make_song

from core.audio.decode import Audio
from core.errors import RemixError
from core.remix.analysis import Analysis, analyze, integrated_loudness, key_name, parse_key

# (tempo BPM, key root, mode, seed): tempi across the usual range, every mode, sharps.
SONGS = [
    (100.0, 9, "minor", 1),
    (121.0, 2, "major", 2),
    (84.0, 7, "major", 3),
    (140.0, 4, "minor", 4),
    (72.0, 0, "major", 5),
    (165.0, 1, "minor", 6),
]


@pytest.fixture(scope="module")
def analysed() -> list[tuple[object, Analysis]]:
    out = []
    for tempo, root, mode, seed in SONGS:
        song = make_song(tempo=tempo, key_root=root, key_mode=mode, seconds=16.0, seed=seed,
                         first_beat=0.3 + 0.1 * seed)
        out.append((song, analyze(song.mix)))
    return out


def test_tempo_within_4_percent_or_octave(analysed) -> None:
    for song, an in analysed:
        ratios = [an.tempo / (song.tempo * f) for f in (0.5, 1.0, 2.0)]
        assert min(abs(r - 1.0) for r in ratios) < 0.04, (song.tempo, an.tempo)
        # On these clear songs the tracker settles on the written tempo itself.
        assert abs(an.tempo / song.tempo - 1.0) < 0.04, (song.tempo, an.tempo)


def test_key_exact(analysed) -> None:
    for song, an in analysed:
        assert (an.key_root, an.key_mode) == (song.key_root, song.key_mode), (song.key_root, song.key_mode, an.key)
        assert an.key == key_name(song.key_root, song.key_mode)


def test_beats_land_on_the_written_beats(analysed) -> None:
    for song, an in analysed:
        inner = song.beats[2:-2]
        err = np.array([np.min(np.abs(an.beats - b)) for b in inner])
        # librosa's onset envelope peaks ~18 ms after an attack; 35 ms bounds that plus jitter.
        assert np.median(err) < 0.035, (song.tempo, np.median(err))
        assert np.percentile(err, 90) < 0.045
        assert np.all(np.diff(an.beats) > 0)


def test_downbeats_are_bar_starts(analysed) -> None:
    found = 0
    for song, an in analysed:
        if an.downbeats is None:
            continue
        found += 1
        for d in an.downbeats[1:-1]:
            assert np.min(np.abs(song.downbeats - d)) < 0.05, (song.tempo, d)
    assert found >= 4  # bass chord changes + kick make the bar phase clear on most songs


def test_click_track_tempo() -> None:
    n = int(12 * SR)
    x = np.zeros(n, dtype=np.float32)
    for b in np.arange(0.25, 12.0, 60.0 / 90.0):
        s = int(b * SR)
        x[s : s + 100] = np.hanning(100)
    an = analyze(Audio(np.stack([x, x]), SR))
    assert abs(an.tempo / 90.0 - 1.0) < 0.04


def test_loudness_of_a_known_sine() -> None:
    # BS.1770: a 997 Hz sine at amplitude 0.1 in both channels of a stereo file is -20 LUFS.
    t = np.arange(5 * SR) / SR
    x = (0.1 * np.sin(2 * np.pi * 997 * t)).astype(np.float32)
    assert integrated_loudness(Audio(np.stack([x, x]), SR)) == pytest.approx(-20.0, abs=0.2)
    assert integrated_loudness(Audio(np.zeros((2, SR), np.float32), SR)) == -70.0


def test_round_trip_through_json(analysed) -> None:
    _, an = analysed[0]
    back = Analysis.from_dict(json.loads(json.dumps(an.to_dict())))
    assert back.to_dict() == an.to_dict()
    np.testing.assert_allclose(back.beats, an.beats, atol=1e-6)
    with pytest.raises(RemixError, match="malformed"):
        Analysis.from_dict({"tempo": 120})


def test_too_short_and_key_parsing() -> None:
    with pytest.raises(RemixError, match="at least 2 s"):
        analyze(Audio(np.zeros((2, SR), np.float32), SR))
    assert parse_key("A minor") == (9, "minor")
    assert parse_key("Bbm") == (10, "minor")
    assert parse_key("f# major") == (6, "major")
    with pytest.raises(ValueError):
        parse_key("H dorian")


def test_missed_beats_are_filled_back() -> None:
    from core.remix.analysis import _fill_gaps

    beats = np.array([0.0, 0.5, 1.0, 1.5, 2.5, 3.0, 3.5, 4.0, 5.5, 6.0, 6.5])
    np.testing.assert_allclose(_fill_gaps(beats), np.arange(0.0, 6.75, 0.5))
