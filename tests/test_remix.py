"""Cross-mix rendering on generated songs: beats measured in the rendered output.

The renderer gets analyses from the real tracker (never the ground truth). The measurement
uses the ground truth: where the match's drum hits land in the rendered accompaniment part
against where the query's beats are (the vocal part is not moved, so its beats are known).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
from synth_songs import SR, make_song

from core.audio.decode import Audio, load_audio
from core.remix.analysis import Analysis, analyze, integrated_loudness
from core.remix.render import (
    CompatibilityReport,
    RemixOptions,
    compatibility,
    render_cross_mix,
    true_peak_gain,
)


def hit_times(x: np.ndarray, expected: np.ndarray, half_window: float) -> np.ndarray:
    """Time of the energy peak (5 ms smoothing) within +/-half_window of each expected time."""
    e = np.convolve(np.mean(x, axis=0) ** 2, np.ones(220) / 220, mode="same")
    out = []
    for b in expected:
        lo, hi = max(0, int((b - half_window) * SR)), min(e.size, int((b + half_window) * SR))
        out.append((lo + int(np.argmax(e[lo:hi]))) / SR)
    return np.array(out)


@pytest.fixture(scope="module")
def pair():
    # Query 100 BPM in A minor; match 121 BPM in D major (needs -2 semitones to share notes).
    q = make_song(tempo=100.0, key_root=9, key_mode="minor", seconds=24.0, seed=11, first_beat=0.45)
    m = make_song(tempo=121.0, key_root=2, key_mode="major", seconds=28.0, seed=12, first_beat=0.8)
    return q, m, analyze(q.mix), analyze(m.mix)


def _offsets(q, m, cm, *, every: int = 1, phase: int = 0) -> np.ndarray:
    hw = 0.25 * min(60.0 / q.tempo, 60.0 / m.tempo)
    bias = float(np.median(hit_times(m.accompaniment.samples, m.beats[1:-1], hw) - m.beats[1:-1]))
    qb = q.beats - cm.start_s
    keep = (qb > 0.5) & (qb < cm.mix.duration - 1.0)
    idx = np.nonzero(keep)[0]
    idx = idx[(idx - idx[0]) % every == phase]
    got = hit_times(cm.accompaniment.samples, qb[idx], hw) - bias
    return np.abs(got - qb[idx])


def test_full_render_keeps_beats_in_phase_over_the_whole_song(pair) -> None:
    q, m, qa, ma = pair
    cm = render_cross_mix(query_vocals=q.vocals, query_analysis=qa, match_accompaniment=m.accompaniment,
                          match_analysis=ma, options=RemixOptions(preview=False, key_match=True))
    assert cm.stretcher == "rubberband"
    assert cm.mix.n == q.vocals.n and cm.start_s == 0.0
    err = _offsets(q, m, cm)
    assert err.size >= 30
    assert np.median(err) < 0.020, err
    assert np.percentile(err, 90) < 0.040, err
    # Key matching shifted the accompaniment 2 semitones down: D major -> C major (A minor's notes).
    assert cm.semitones_applied == -2
    shifted = analyze(cm.accompaniment)
    assert (shifted.key_root, shifted.key_mode) in ((0, "major"), (9, "minor"))
    # The parts are sample-aligned and sum to the mix; nothing reaches full scale.
    np.testing.assert_allclose(cm.vocals.samples + cm.accompaniment.samples, cm.mix.samples, atol=1e-5)
    assert np.max(np.abs(cm.mix.samples)) <= 10 ** (-1.0 / 20) + 1e-6
    # The vocal is the query's own, not stretched or shifted: only gain (limiter) and fades.
    mid = slice(2 * SR, 20 * SR)
    assert np.corrcoef(cm.vocals.samples[0, mid], q.vocals.samples[0, mid])[0, 1] > 0.999


def test_double_time_match_and_preview() -> None:
    # A 66 BPM match under a 128 BPM query: it must be played at its double-time level
    # (132 BPM, -3 % stretch), not slowed to half the query's tempo or sped up by 94 %.
    q = make_song(tempo=128.0, key_root=4, key_mode="minor", seconds=22.0, seed=21, first_beat=0.6)
    m = make_song(tempo=66.0, key_root=7, key_mode="major", seconds=40.0, seed=22, first_beat=0.4)
    qa, ma = analyze(q.mix), analyze(m.mix)
    cm = render_cross_mix(query_vocals=q.vocals, query_analysis=qa, match_accompaniment=m.accompaniment,
                          match_analysis=ma, options=RemixOptions(preview=True, preview_seconds=12.0))
    level = cm.report.match_tempo * cm.report.tempo_multiplier
    assert abs(level / 132.0 - 1.0) < 0.04
    assert abs(cm.report.stretch_percent) < 6.0
    assert cm.mix.duration == pytest.approx(12.0, abs=1e-3)
    # Every other query beat meets a written match beat (kick or snare); the others meet its
    # off-beats, where only a hi-hat 18 dB down marks the time. Measure on the loud phase.
    env = np.convolve(np.mean(cm.accompaniment.samples, axis=0) ** 2, np.ones(220) / 220, mode="same")
    qb = q.beats - cm.start_s
    qb = qb[(qb > 0.5) & (qb < cm.mix.duration - 1.0)]
    loudness = [np.mean([env[int(b * SR) - 2000 : int(b * SR) + 2000].max() for b in qb[p::2]]) for p in (0, 1)]
    err = _offsets(q, m, cm, every=2, phase=int(np.argmax(loudness)))
    assert np.median(err) < 0.020, err
    assert np.percentile(err, 90) < 0.040, err


def test_preview_starts_where_the_vocal_is() -> None:
    sr = SR
    voc = np.zeros((2, 40 * sr), np.float32)
    t = np.arange(10 * sr) / sr
    voc[:, 22 * sr : 32 * sr] = 0.2 * np.sin(2 * np.pi * 330 * t)
    acc = np.random.default_rng(0).standard_normal((2, 40 * sr)).astype(np.float32) * 0.05
    beats = np.arange(0.5, 40.0, 0.5)

    def an(dur: float) -> Analysis:
        return Analysis(tempo=120.0, beats=beats, downbeats=beats[::4], key="C major", key_root=0,
                        key_mode="major", lufs=-20.0, duration=dur)

    cm = render_cross_mix(query_vocals=Audio(voc, sr), query_analysis=an(40.0),
                          match_accompaniment=Audio(acc, sr), match_analysis=an(40.0),
                          options=RemixOptions(preview_seconds=8.0))
    assert 20.0 <= cm.start_s <= 24.0  # on a bar line at or before the vocal's loudest 8 s
    assert cm.mix.duration == pytest.approx(8.0, abs=1e-3)
    assert np.min(np.abs(beats[::4] - cm.start_s)) < 1e-3


def test_loudness_balance_and_vocal_gain(pair) -> None:
    q, m, qa, ma = pair
    opts = dict(preview=True, preview_seconds=10.0, fade_in_s=0.0, fade_out_s=0.0, target_lufs=-30.0)
    even = render_cross_mix(query_vocals=q.vocals, query_analysis=qa, match_accompaniment=m.accompaniment,
                            match_analysis=ma, options=RemixOptions(**opts))
    louder = render_cross_mix(query_vocals=q.vocals, query_analysis=qa, match_accompaniment=m.accompaniment,
                              match_analysis=ma, options=RemixOptions(**opts, vocal_gain_db=6.0))

    def gap(cm) -> float:
        return integrated_loudness(cm.vocals) - integrated_loudness(cm.accompaniment)

    assert gap(even) == pytest.approx(0.0, abs=0.5)
    assert gap(louder) == pytest.approx(6.0, abs=0.5)
    assert integrated_loudness(even.mix) == pytest.approx(-30.0, abs=1.0)


def test_phase_vocoder_fallback_stays_roughly_aligned(pair) -> None:
    q, m, qa, ma = pair
    cm = render_cross_mix(query_vocals=q.vocals, query_analysis=qa, match_accompaniment=m.accompaniment,
                          match_analysis=ma, options=RemixOptions(preview_seconds=10.0, use_rubberband=False))
    assert cm.stretcher == "librosa-phase-vocoder"
    err = _offsets(q, m, cm)
    assert np.median(err) < 0.030  # coarser than Rubber Band (2048/512 frames), still in phase


def test_true_peak_limiter_holds_the_ceiling() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, SR)) * 0.1
    x[:, 20000:20010] = 2.5  # a burst far over full scale
    g = true_peak_gain(x, SR, ceiling_dbtp=-1.0)
    y = x * g
    assert np.max(np.abs(y)) <= 10 ** (-1 / 20) + 1e-9
    assert np.all((g > 0) & (g <= 1.0))
    assert np.mean(g[:10000]) > 0.99  # far from the burst nothing is touched


def _an(tempo: float, root: int, mode: str) -> Analysis:
    beats = np.arange(0.5, 60.0, 60.0 / tempo)
    return Analysis(tempo=tempo, beats=beats, downbeats=None, key=f"{root} {mode}", key_root=root,
                    key_mode=mode, lufs=-14.0, duration=60.0)  # type: ignore[arg-type]


def test_compatibility_report() -> None:
    q = _an(120.0, 9, "minor")  # A minor
    same = compatibility(q, _an(120.0, 0, "major"), similarity=0.6)  # C major: relative key
    assert same.stretch_ratio == pytest.approx(1.0) and same.semitone_shift == 0 and same.key_distance == 0
    assert same.mashability == pytest.approx(0.6)
    d_major = compatibility(q, _an(120.0, 2, "major"), similarity=0.6)
    assert d_major.semitone_shift == -2 and d_major.key_distance == 2 and d_major.residual_key_distance == 0
    far = compatibility(q, _an(120.0, 6, "major"), similarity=0.6)  # F# major: 6 semitones away
    assert far.semitone_shift == 0 and far.residual_key_distance == 6
    half = compatibility(q, _an(62.0, 0, "major"), similarity=0.6)
    assert half.tempo_multiplier == 2.0 and half.stretch_percent == pytest.approx((120 / 124 - 1) * 100)
    stretched = compatibility(q, _an(100.0, 0, "major"), similarity=0.6)
    assert stretched.stretch_percent == pytest.approx(20.0)
    # Ranking: same similarity, more stretch or a farther key scores lower.
    assert same.mashability > d_major.mashability > far.mashability
    assert same.mashability > stretched.mashability
    back = json.loads(json.dumps(stretched.to_dict()))
    assert CompatibilityReport(**back) == stretched
    assert math.isfinite(stretched.offset_s)


def test_cli_remix_writes_mix_stems_and_json(tmp_path, capsys) -> None:
    from cli import main

    q = make_song(tempo=96.0, key_root=9, key_mode="minor", seconds=14.0, seed=31)
    m = make_song(tempo=108.0, key_root=0, key_mode="major", seconds=16.0, seed=32)
    sf.write(tmp_path / "query.wav", q.mix.samples.T, SR)
    sf.write(tmp_path / "match.wav", m.mix.samples.T, SR)
    out = tmp_path / "out" / "cm.wav"
    args = ["remix", str(tmp_path / "query.wav"), str(tmp_path / "match.wav"), "-o", str(out),
            "--preview", "--preview-seconds", "8", "--key-match", "--vocal-gain", "2", "--stems",
            "--json", "--separator", "tiny", "--no-cache", "--device", "cpu"]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["similarity_computed"] is False and doc["report"]["similarity"] is None
    assert doc["query"]["analysis"]["key"] == "A minor" and doc["match"]["analysis"]["key"] == "C major"
    assert abs(doc["report"]["stretch_ratio"] - 96.0 / 108.0) < 0.03
    assert doc["report"]["semitone_shift"] == 0  # relative keys share their notes
    paths = [out, out.with_name("cm_vocals.wav"), out.with_name("cm_accompaniment.wav")]
    assert doc["outputs"] == [str(p) for p in paths]
    parts = [load_audio(p) for p in paths]
    assert {a.n for a in parts} == {int(round(8.0 * SR))}
    np.testing.assert_allclose(parts[1].samples + parts[2].samples, parts[0].samples, atol=1e-4)
    # A second run refuses to overwrite without --overwrite.
    assert main(args) == 1
    assert "exists" in capsys.readouterr().err

