"""Audio fingerprints recognise other versions of a recording (re-encodes, mono, remasters,
edits) and nothing else, and the library uses them to leave a query's versions out of its
matches, where the learned mix embedding cannot tell (bench/duplicates.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from synth_songs import make_song

from core.api import Crossmix
from core.audio.decode import Audio, load_audio
from core.audio.fingerprints import MATCH_BER, best_offset, fingerprint, same_recording
from core.embedding.encoders import EncoderPair
from core.library.library import Library
from core.separation.separator import Separator

VERSIONS = {  # what a user may really have: ffmpeg output options
    "mp3": ["-c:a", "libmp3lame", "-b:a", "128k"],
    "mono": ["-ac", "1"],
    "remaster": ["-ss", "0.725", "-af", "volume=-4dB,treble=g=3:f=6000"],
}


def _version(src: Path, name: str, out_dir: Path) -> Path:
    out = out_dir / f"{src.stem}.{name}.{'mp3' if name == 'mp3' else 'flac'}"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), *VERSIONS[name], str(out)],
                   check=True)
    return out


def _song(path: Path, seed: int, seconds: float = 16.0) -> Path:
    s = make_song(tempo=96.0 + 7 * seed, key_root=seed % 12, seconds=seconds, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, s.mix.samples.T, s.mix.sr)
    return path


@pytest.mark.parametrize("name", list(VERSIONS))
def test_versions_of_the_real_clip_match_and_other_songs_do_not(
        example_clip: Path, tmp_path: Path, name: str) -> None:
    ref = fingerprint(load_audio(example_clip))
    assert ref.dtype == np.uint32 and ref.size > 150  # 50 ms words
    v = fingerprint(load_audio(_version(example_clip, name, tmp_path)))
    verdict = same_recording(v, ref)
    assert verdict is not None and verdict[0], verdict
    ber, offset, _ = best_offset(v, ref)
    assert ber < MATCH_BER and offset in ((14, 15) if name == "remaster" else (0,))  # 0.725 s cut
    for seed in (1, 2):  # songs in another style, and the clip's own gain-changed, shifted noise
        other = fingerprint(load_audio(_song(tmp_path / f"o{seed}.wav", seed)))
        verdict = same_recording(v, other)
        assert verdict is not None and not verdict[0] and verdict[1] > 0.4, verdict


def test_too_short_to_tell_and_invariant_to_gain(rng: np.random.Generator) -> None:
    x = rng.uniform(-0.3, 0.3, (2, 44100 * 3)).astype(np.float32)
    short = fingerprint(Audio(x, 44100))
    assert same_recording(short, short) is None  # 3 s: no verdict, never a false "same"
    y = rng.uniform(-0.3, 0.3, (2, 44100 * 12)).astype(np.float32)
    a, b = fingerprint(Audio(y, 44100)), fingerprint(Audio(y * 0.25, 44100))
    assert np.array_equal(a, b)  # the bits are differences of energies: gain-free


def test_library_leaves_out_versions_by_fingerprint_only(tmp_path: Path) -> None:
    music = tmp_path / "music"
    paths = [_song(music / f"song{i}.wav", seed=i) for i in range(3)]
    enc, sep = EncoderPair.tiny(seed=0), Separator.tiny(seed=0)
    lib = Library.open(tmp_path / "lib", encoders=enc, separator=sep)
    lib.add_paths([music])
    lib.scan(mode="fast", analyze=False)
    ids = {s.paths[0]: s.id for s in lib.songs()}
    assert set(lib.catalog.fingerprints(ids.values())) == set(ids.values())
    assert all(s["fingerprint"] for s in lib.catalog.dump()["songs"].values())

    # a remaster of song0 from outside the library: recognised by its fingerprint, while the
    # other songs stay matches even with a similarity rule that would call everything a version
    remaster = _version(paths[0], "remaster", tmp_path)
    cx = Crossmix(library=lib, separator=sep, encoders=enc)
    res = lib.search(cx.embed_query(remaster), space="mix->mix", k=10, duplicate_similarity=0.0,
                     duplicate_margin=0.0)
    assert [d.song_id for d in res.excluded_duplicates] == [ids[str(paths[0])]]
    assert "audio fingerprint" in (res.excluded_duplicates[0].duplicate or "")
    assert sorted(m.song_id for m in res.matches) == sorted(
        ids[str(p)] for p in paths[1:])
    # a song of the library queried by path keeps its stored fingerprint
    q = cx.embed_query(paths[1])
    assert q.fingerprint is not None and q.fingerprint.size > 150
    cx.close()  # and the library
