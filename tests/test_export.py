"""Export: formats decode back with the right duration and tags; no clipping; no half-written files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from synth_songs import SR, make_song

from core.audio.decode import Audio, load_audio
from core.audio.export import (
    check_export_folder,
    cross_mix_tags,
    export_audio,
    export_cross_mix,
    stem_paths,
    unique_export_paths,
)
from core.errors import ExportError

TAGS = {"title": "Query x Match", "artist": "Crossmix", "comment": "vocal of query.wav over match.mp3"}


def ffprobe_tags(path: Path) -> dict[str, str]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format_tags:stream_tags", "-of", "json", str(path)],
        capture_output=True, check=True,
    )
    meta = json.loads(out.stdout)
    tags: dict[str, str] = {}
    for s in meta.get("streams", []):
        tags.update({k.lower(): v for k, v in (s.get("tags") or {}).items()})
    tags.update({k.lower(): v for k, v in (meta.get("format", {}).get("tags") or {}).items()})
    return tags


@pytest.fixture(scope="module")
def loud() -> Audio:
    """A 2.5 s stereo signal peaking at exactly full scale (a worst case for lossy overshoot)."""
    t = np.arange(int(2.5 * SR)) / SR
    rng = np.random.default_rng(5)
    x = np.stack([np.sin(2 * np.pi * 220 * t) + 0.3 * rng.standard_normal(t.size),
                  np.sin(2 * np.pi * 330 * t + 1.0)])
    x = x / np.max(np.abs(x))
    return Audio(x.astype(np.float32), SR)


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg"])
def test_formats_decode_back_with_duration_tags_and_no_clipping(tmp_path: Path, loud: Audio, fmt: str) -> None:
    p = export_audio(tmp_path / f"out.{fmt}", loud, tags=TAGS, bitrate="128k")
    back = load_audio(p)
    assert back.sr == SR and back.channels == 2
    assert back.duration == pytest.approx(loud.duration, abs=0.03)
    assert float(np.max(np.abs(back.samples))) <= 1.0
    tags = ffprobe_tags(p)
    for key, value in TAGS.items():
        assert tags.get(key) == value, (fmt, tags)
    if fmt in ("wav", "flac"):  # lossless 24-bit: the samples themselves come back
        assert np.max(np.abs(back.samples - loud.samples)) < 1e-5
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no temp files left


def test_never_overwrites_without_the_flag(tmp_path: Path, loud: Audio) -> None:
    p = tmp_path / "keep.wav"
    p.write_bytes(b"precious")
    with pytest.raises(ExportError, match="exists"):
        export_audio(p, loud)
    assert p.read_bytes() == b"precious"
    export_audio(p, loud, overwrite=True)
    assert load_audio(p).n == loud.n


def test_bad_targets_raise_export_error(tmp_path: Path, loud: Audio) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="cannot write"):
        export_audio(blocker / "out.wav", loud)  # the "folder" is a file
    with pytest.raises(ExportError, match="cannot export"):
        export_audio(tmp_path / "out.xyz", loud)


def test_disk_full_leaves_nothing_behind(tmp_path: Path) -> None:
    # A file-size limit makes every write past 20 kB fail with EFBIG, as a full disk would.
    script = textwrap.dedent(f"""
        import resource, signal, sys
        import numpy as np
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from core.audio.decode import Audio
        from core.errors import ExportError
        from core.audio.export import export_audio
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
        x = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 44100 * 3)).astype(np.float32)
        try:
            export_audio({str(tmp_path / "big.flac")!r}, Audio(x, 44100))
        except ExportError as exc:
            print("EXPORT-ERROR", exc)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "EXPORT-ERROR" in out.stdout, out.stdout + out.stderr
    assert "disk full" in out.stdout
    assert os.listdir(tmp_path) == []


def test_cross_mix_stems_are_sample_aligned_and_all_or_nothing(tmp_path: Path) -> None:
    song = make_song(tempo=110.0, key_root=0, seconds=3.0, seed=3)
    mix = Audio(song.mix.samples * 0.5, SR)
    out = tmp_path / "cm.flac"
    tags = cross_mix_tags(query_title="Query", match_title="Match", query_source="q.wav", match_source="m.mp3")
    assert tags["title"] == "Query x Match" and "q.wav" in tags["comment"] and "m.mp3" in tags["comment"]
    v_path, a_path = stem_paths(out)
    assert (v_path.name, a_path.name) == ("cm_vocals.flac", "cm_accompaniment.flac")
    a_path.write_bytes(b"old")
    with pytest.raises(ExportError, match="exists"):
        export_cross_mix(out, mix, vocals=song.vocals, accompaniment=song.accompaniment, tags=tags)
    assert not out.exists() and not v_path.exists()  # nothing written when one target exists
    written = export_cross_mix(out, mix, vocals=song.vocals, accompaniment=song.accompaniment, tags=tags,
                               overwrite=True)
    assert written == [out, v_path, a_path]
    lengths = {sf.info(str(p)).frames for p in written}
    assert lengths == {mix.n}
    assert ffprobe_tags(v_path)["title"] == "Query x Match (vocals)"


def test_unique_export_paths_keep_dots_and_never_reuse_a_name(tmp_path: Path) -> None:
    (tmp_path / "Q v1.0 x Bravo.wav").write_bytes(b"taken")
    (tmp_path / "Q v1.0 x Delta_vocals.wav").write_bytes(b"a stem of an older export")
    names = ["Q v1.0 x Alpha", "Q v1.0 x Alpha", "Q v1.0 x Bravo", "Q v1.0 x alpha",
             "Q v1.0 x Delta"]
    got = [p.name for p in unique_export_paths(names, tmp_path, "wav")]
    assert got == ["Q v1.0 x Alpha.wav", "Q v1.0 x Alpha (2).wav", "Q v1.0 x Bravo (2).wav",
                   "Q v1.0 x alpha (3).wav", "Q v1.0 x Delta.wav"]
    # with stems, a name whose stem file exists is taken too
    with_stems = unique_export_paths(["Q v1.0 x Delta"], tmp_path, "wav", stems=True)
    assert [p.name for p in with_stems] == ["Q v1.0 x Delta (2).wav"]
    assert all(p.parent == tmp_path for p in with_stems)


def test_check_export_folder_says_what_is_wrong(tmp_path: Path) -> None:
    new = check_export_folder(tmp_path / "new" / "folder")
    assert new.is_dir() and not list(new.iterdir())  # created; the write test left nothing
    f = tmp_path / "a file"
    f.write_text("x")
    with pytest.raises(ExportError, match="this is a file, not a folder"):
        check_export_folder(f)
    with pytest.raises(ExportError, match="cannot write in this folder"):
        check_export_folder(f / "below")
