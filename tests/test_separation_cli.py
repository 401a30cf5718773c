"""``crossmix separate`` end to end with the tiny random-weight separator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cli import main
from conftest import write_tone


def test_separate_writes_stems_and_reports_each_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_tone(tmp_path / "tone.wav", seconds=1.5, sr=22050, channels=1)
    text = tmp_path / "notes.mp3"
    text.write_text("not audio")
    missing = tmp_path / "missing.flac"
    out = tmp_path / "out"
    rc = main(["separate", str(good), str(text), str(missing), "-o", str(out), "--separator", "tiny",
               "--format", "flac", "--device", "cpu", "--no-cache"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "notes.mp3: this is not audio" in err and "missing.flac: no such file" in err
    assert "2 of 3 file(s) failed" in err
    v, sr = sf.read(out / "tone_vocals.flac", always_2d=True)
    a, _ = sf.read(out / "tone_accompaniment.flac", always_2d=True)
    assert sr == 44100 and v.shape == a.shape == (int(1.5 * 44100), 2)
    assert sorted(p.name for p in out.iterdir()) == ["tone_accompaniment.flac", "tone_vocals.flac"]


def test_full_band_flag_writes_mix_minus_vocals(tmp_path: Path) -> None:
    song = tmp_path / "song.wav"
    rng = np.random.default_rng(0)
    sf.write(song, (0.2 * rng.standard_normal((44100, 2))).astype(np.float32), 44100, subtype="FLOAT")
    for flag, name in (([], "band"), (["--full-band"], "full")):
        rc = main(["separate", str(song), "-o", str(tmp_path / name), "--separator", "tiny", "--no-cache", *flag])
        assert rc == 0
    mix, _ = sf.read(song, always_2d=True)
    voc, _ = sf.read(tmp_path / "full" / "song_vocals.wav", always_2d=True)
    full, _ = sf.read(tmp_path / "full" / "song_accompaniment.wav", always_2d=True)
    band, _ = sf.read(tmp_path / "band" / "song_accompaniment.wav", always_2d=True)
    assert np.max(np.abs(voc + full - mix)) < 1e-6
    spec = np.abs(np.fft.rfft(band[:, 0]))
    freqs = np.fft.rfftfreq(band.shape[0], 1 / 44100)
    assert spec[freqs > 12_000].max() < 1e-3 * spec.max()  # Spleeter's own stem stops at 11 kHz
    # existing outputs are kept unless --overwrite
    assert main(["separate", str(song), "-o", str(tmp_path / "full"), "--separator", "tiny", "--no-cache"]) == 1
    assert main(["separate", str(song), "-o", str(tmp_path / "full"), "--separator", "tiny", "--no-cache",
                 "--overwrite"]) == 0


def test_help_states_the_default_accompaniment(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["separate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "default: Spleeter's own accompaniment" in out and "--full-band" in out


def test_songs_with_the_same_name_do_not_overwrite_each_other(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_tone(tmp_path / "a" / "song.wav", seconds=0.5, freq=440.0)
    second = write_tone(tmp_path / "b" / "song.wav", seconds=0.5, freq=660.0)
    rc = main(["separate", str(first), str(second), "-o", str(tmp_path / "out"), "--separator", "tiny",
               "--no-cache", "--overwrite"])
    assert rc == 1
    assert "same names as those of" in capsys.readouterr().err
    mix, _ = sf.read(first, always_2d=True)
    voc, _ = sf.read(tmp_path / "out" / "song_vocals.wav", always_2d=True)
    acc, _ = sf.read(tmp_path / "out" / "song_accompaniment.wav", always_2d=True)
    low = np.abs(np.fft.rfft((voc + acc)[:, 0]))
    assert np.argmax(low) == np.argmax(np.abs(np.fft.rfft(mix[:, 0])))  # the 440 Hz song's stems
