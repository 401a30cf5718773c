"""core.audio.decode: decoding every supported format and a typed, clear error for every bad input."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import write_tone
from core.audio.decode import Audio, audio_hash, file_hash, load_audio, probe_duration, save_audio
from core.errors import (
    AudioError,
    CorruptAudioError,
    CrossmixError,
    EmptyAudioError,
    ExportError,
    NotAudioError,
    SilentAudioError,
    TooLongError,
    UnreadableFileError,
    UnsupportedFormatError,
)

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def _encode(src: Path, dst: Path, *args: str) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), *args, str(dst)], check=True)
    return dst


@pytest.fixture
def tone(tmp_path: Path) -> Path:
    return write_tone(tmp_path / "tone.wav", seconds=2.0, freq=440.0)


def test_wav_decodes_to_float32_channels_first(tone: Path) -> None:
    a = load_audio(tone)
    assert a.samples.dtype == np.float32
    assert a.samples.shape == (2, 88200)
    assert a.sr == 44100
    assert a.source == tone
    assert abs(float(np.max(np.abs(a.samples))) - 0.3) < 1e-3


def test_resample_and_channel_conversion(tone: Path) -> None:
    a = load_audio(tone, sr=22050, channels=1)
    assert a.samples.shape == (1, 44100)
    # a 440 Hz tone stays a 440 Hz tone after soxr resampling
    spec = np.abs(np.fft.rfft(a.samples[0]))
    assert abs(np.argmax(spec) * 22050 / a.n - 440.0) < 1.0
    mono = write_tone(tone.with_name("mono.wav"), channels=1)
    assert load_audio(mono, channels=2).samples.shape[0] == 2


@needs_ffmpeg
@pytest.mark.parametrize(
    ("ext", "args"),
    [
        ("flac", ()),
        ("ogg", ("-c:a", "libvorbis")),
        ("mp3", ("-c:a", "libmp3lame", "-b:a", "192k")),
        ("m4a", ("-c:a", "aac", "-b:a", "192k")),
        ("aac", ("-c:a", "aac", "-f", "adts")),
    ],
)
def test_compressed_formats_decode(tone: Path, tmp_path: Path, ext: str, args: tuple[str, ...]) -> None:
    enc = _encode(tone, tmp_path / f"tone.{ext}", *args)
    a = load_audio(enc, sr=44100)
    assert a.channels == 2
    assert abs(a.duration - 2.0) < 0.1  # codec priming/padding is at most a few frames
    spec = np.abs(np.fft.rfft(a.samples[0]))
    assert abs(np.argmax(spec) * 44100 / a.n - 440.0) < 2.0


def test_real_clip_decodes(example_clip: Path) -> None:
    a = load_audio(example_clip)
    assert a.sr == 44100 and a.channels == 2
    assert a.duration == pytest.approx(10.88, abs=0.1)  # ffprobe: 10.9 s


# --- every bad input gets its own typed error naming the file --------------------------------


def _assert_error(exc: AudioError, path: Path, words: str) -> None:
    assert isinstance(exc, CrossmixError)
    assert str(path) in str(exc)
    assert words in str(exc)


def test_text_file_with_audio_extension_is_not_audio(tmp_path: Path) -> None:
    p = tmp_path / "notes.mp3"
    p.write_text("Shopping list: milk, eggs, a new microphone.\n" * 20)
    with pytest.raises(NotAudioError) as ei:
        load_audio(p)
    _assert_error(ei.value, p, "not audio")
    assert "text file" in str(ei.value)


def test_image_is_not_audio(tmp_path: Path) -> None:
    p = tmp_path / "cover.wav"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(NotAudioError, match="image"):
        load_audio(p)


def test_truncated_wav_is_corrupt(tone: Path, tmp_path: Path) -> None:
    p = tmp_path / "cut.wav"
    data = tone.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(CorruptAudioError) as ei:
        load_audio(p)
    _assert_error(ei.value, p, "truncated")


def test_garbage_after_audio_header_is_corrupt(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    p = tmp_path / "broken.flac"
    p.write_bytes(b"fLaC" + rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(CorruptAudioError) as ei:
        load_audio(p)
    _assert_error(ei.value, p, "")


@needs_ffmpeg
def test_garbage_mp3_is_corrupt(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    p = tmp_path / "broken.mp3"
    p.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00" + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises((CorruptAudioError, EmptyAudioError)) as ei:
        load_audio(p)
    assert str(p) in str(ei.value)


def test_zero_byte_file_is_empty(tmp_path: Path) -> None:
    p = tmp_path / "empty.wav"
    p.touch()
    with pytest.raises(EmptyAudioError) as ei:
        load_audio(p)
    _assert_error(ei.value, p, "empty")


def test_header_only_wav_is_empty(tmp_path: Path) -> None:
    p = tmp_path / "nothing.wav"
    sf.write(p, np.zeros((0, 2), dtype=np.float32), 44100)
    with pytest.raises(EmptyAudioError) as ei:
        load_audio(p)
    _assert_error(ei.value, p, "zero samples")


def test_silence_is_refused_unless_allowed(tmp_path: Path) -> None:
    p = tmp_path / "silence.wav"
    sf.write(p, np.zeros((44100, 2), dtype=np.float32), 44100)
    with pytest.raises(SilentAudioError) as ei:
        load_audio(p)
    _assert_error(ei.value, p, "silent")
    assert load_audio(p, allow_silent=True).n == 44100


def test_midi_is_unsupported(tmp_path: Path) -> None:
    p = tmp_path / "song.mid"
    p.write_bytes(b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) + b"MTrk\x00\x00\x00\x04\x00\xff\x2f\x00")
    with pytest.raises(UnsupportedFormatError) as ei:
        load_audio(p)
    _assert_error(ei.value, p, "MIDI")


def test_too_long_is_refused_before_decoding(tmp_path: Path) -> None:
    p = write_tone(tmp_path / "three.wav", seconds=3.0)
    with pytest.raises(TooLongError) as ei:
        load_audio(p, max_duration=2.0)
    _assert_error(ei.value, p, "limit")
    assert load_audio(p, max_duration=None).duration == pytest.approx(3.0)


def test_two_hour_file_refused_from_its_header(tmp_path: Path) -> None:
    # A real 2-hour FLAC (quiet noise at 8 kHz, small on disk): refused from the header, not decoded.
    p = tmp_path / "two_hours.flac"
    rng = np.random.default_rng(0)
    block = (1e-3 * rng.standard_normal((8000 * 60, 1))).astype(np.float32)
    with sf.SoundFile(p, "w", samplerate=8000, channels=1, format="FLAC", subtype="PCM_16") as fh:
        for _ in range(120):
            fh.write(block)
    assert probe_duration(p) == pytest.approx(7200.0)
    with pytest.raises(TooLongError, match="2:00:00") as ei:
        load_audio(p)
    assert str(p) in str(ei.value)


def test_missing_file_and_folder_are_unreadable(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError, match="no such file"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(UnreadableFileError, match="folder"):
        load_audio(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may read any file")
def test_permission_denied_is_unreadable(tone: Path) -> None:
    tone.chmod(0)
    try:
        with pytest.raises(UnreadableFileError, match="permission"):
            load_audio(tone)
    finally:
        tone.chmod(0o644)


# --- writing and hashing ------------------------------------------------------------------


def test_save_audio_roundtrip_and_no_overwrite(tmp_path: Path, rng: np.random.Generator) -> None:
    a = Audio((0.1 * rng.standard_normal((2, 4410))).astype(np.float32), 44100)
    out = save_audio(tmp_path / "x.wav", a)
    back = load_audio(out)
    np.testing.assert_array_equal(back.samples, a.samples)
    with pytest.raises(ExportError, match="exists"):
        save_audio(out, a, overwrite=False)
    flac = save_audio(tmp_path / "x.flac", a)
    np.testing.assert_allclose(load_audio(flac).samples, a.samples, atol=2**-22)
    assert not [f for f in os.listdir(tmp_path) if ".part." in f]


def test_save_audio_into_unwritable_place_raises_export_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    a = Audio(np.zeros((1, 10), np.float32), 8000)
    with pytest.raises(ExportError, match="could not write"):
        save_audio(blocker / "sub" / "out.wav", a)


def test_hashes(tone: Path, tmp_path: Path) -> None:
    copy = tmp_path / "moved" / "renamed.wav"
    copy.parent.mkdir()
    shutil.copy(tone, copy)
    assert file_hash(tone) == file_hash(copy)
    a, b = load_audio(tone), load_audio(copy)
    assert audio_hash(a) == audio_hash(b)
    louder = Audio(a.samples * 0.5, a.sr)
    assert audio_hash(louder) != audio_hash(a)


def test_saved_files_get_normal_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        out = save_audio(tmp_path / "p.wav", Audio(np.zeros((1, 100), np.float32), 8000))
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600
