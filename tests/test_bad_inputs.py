"""Bad inputs and faults, as a new user meets them: through the CLI and the engine.

Each case of the battery says what it feeds Crossmix, the exit status and the message it
expects, and checks that nothing was lost: the library's songs and vectors are as before,
and no traceback reached the user. Models are tiny random-weight ones (what is checked here
does not depend on the weights); songs are a few seconds of generated audio.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.audio import load_audio
from core.catalog import Catalog
from core.cli import main
from core.encoders import EncoderPair
from core.errors import CrossmixError
from core.library import Library
from core.separation import Separator

SR = 22050
TINY = ["--encoders", "tiny", "--separator", "tiny"]


def write_song(path: Path, *, seed: int, seconds: float = 4.0, sr: int = SR) -> Path:
    """A distinct little 'song': harmonic tones over noise bursts, stereo."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    x = np.zeros(n)
    notes = 110.0 * 2 ** (rng.integers(0, 24, 8) / 12)
    step = n // len(notes)
    for i, f in enumerate(notes):
        seg = slice(i * step, (i + 1) * step)
        for h in range(1, 4):
            x[seg] += 0.15 / h * np.sin(2 * np.pi * f * h * t[seg])
    x += 0.03 * rng.standard_normal(n)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.stack([x, 0.8 * x], axis=1).astype(np.float32), sr)
    return path


def ffmpeg(*args: str) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True)


def songs_of(lib: Path) -> dict[str, object]:
    """The library's songs and vectors (what must never be lost)."""
    cat = Catalog.open(lib / "catalog.sqlite")
    try:
        return cat.dump()["songs"]
    finally:
        cat.close()


@pytest.fixture(scope="module")
def base_library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Three songs in a folder and a library (fast mode, tiny models) that indexed them."""
    root = tmp_path_factory.mktemp("bad-inputs")
    songs = root / "songs"
    for i in range(3):
        write_song(songs / f"song {i}.wav", seed=i)
    with Library.open(root / "lib", separator=Separator.tiny(), encoders=EncoderPair.tiny()) as lib:
        lib.add_paths([songs])
        assert lib.scan(mode="fast").indexed == 3
    return songs, root / "lib"


@dataclass
class Ctx:
    """What a case works in: its own copy of the songs and of the library."""

    tmp: Path
    songs: Path
    lib: Path

    def song(self, i: int = 0) -> Path:
        return self.songs / f"song {i}.wav"


@pytest.fixture
def ctx(tmp_path: Path, base_library: tuple[Path, Path]) -> Ctx:
    songs, lib = base_library
    c = Ctx(tmp_path, tmp_path / "songs", tmp_path / "lib")
    shutil.copytree(songs, c.songs)
    shutil.copytree(lib, c.lib)
    # the copied catalog names the original songs folder: point it at this copy
    cat = Catalog.open(c.lib / "catalog.sqlite")
    with cat.transaction() as conn:
        conn.execute("UPDATE roots SET path=?", (str(c.songs),))
        conn.execute("UPDATE files SET path=replace(path, ?, ?)", (str(songs), str(c.songs)))
    cat.close()
    return c


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    text = out + err
    assert "Traceback" not in text, text
    return rc, text


# --- the battery: (what the user does) -> (exit status, message), nothing lost ------------------


def _fifo(c: Ctx, name: str = "pipe.wav", *, folder: Path | None = None) -> Path:
    p = (folder or c.songs) / name
    os.mkfifo(p)
    return p


def _streamed_flac(c: Ctx) -> Path:
    out = c.tmp / "streamed.flac"
    with open(out, "wb") as fh:
        if shutil.which("ffmpeg") is None:
            pytest.skip("needs ffmpeg")
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(c.song(0)), "-f", "flac",
                        "-"], stdout=fh, check=True)
    return out


def _cut_flac(c: Ctx) -> Path:
    whole = c.tmp / "whole.flac"
    sf.write(whole, sf.read(c.song(1))[0], SR, format="FLAC")
    data = whole.read_bytes()
    cut = c.tmp / "cut.flac"
    cut.write_bytes(data[: len(data) // 4])
    return cut


@dataclass(frozen=True)
class Case:
    id: str
    #: builds the inputs in the case's context and returns the command line
    argv: Callable[[Ctx], list[str]]
    rc: int
    #: regular expression the output (stdout + stderr) must match
    message: str


CASES = [
    Case("library add: a FIFO in the folder is skipped with a reason, the rest indexed",
         lambda c: (_fifo(c), write_song(c.songs / "new.wav", seed=9),
                    ["library", "add", str(c.songs), "--library", str(c.lib), *TINY])[-1],
         0, r"1 indexed.*1 failed"),
    Case("library status names the FIFO and why",
         lambda c: (_fifo(c), main(["library", "scan", "--library", str(c.lib), *TINY]),
                    ["library", "status", "--library", str(c.lib)])[-1],
         0, r"pipe\.wav: \[stat\] NotRegularFileError: this is a named pipe \(FIFO\)"),
    Case("match on a FIFO",
         lambda c: ["match", str(_fifo(c)), "--library", str(c.lib), *TINY],
         1, r"pipe\.wav: this is a named pipe \(FIFO\), not a regular file"),
    Case("separate a FIFO",
         lambda c: ["separate", str(_fifo(c)), "-o", str(c.tmp / "out"), "--model", "tiny"],
         1, r"pipe\.wav: this is a named pipe \(FIFO\), not a regular file"),
    Case("library add a FIFO itself",
         lambda c: ["library", "add", str(_fifo(c, "lone.wav", folder=c.tmp)), "--library",
                    str(c.lib), *TINY],
         0, r"4 audio files: 0 indexed.*3 unchanged, 1 failed"),
    Case("library add: a cut FLAC is refused, not indexed from its first second",
         lambda c: (shutil.move(_cut_flac(c), c.songs / "cut.flac"),
                    ["library", "add", str(c.songs), "--library", str(c.lib), *TINY])[-1],
         0, r"0 indexed.*1 failed"),
    Case("match with a cut FLAC",
         lambda c: ["match", str(_cut_flac(c)), "--library", str(c.lib), *TINY],
         1, r"cut\.flac: it is truncated: its header promises 4\.0 s of audio but only \d\.\d s"),
    Case("match with a 0.5 s clip",
         lambda c: ["match", str(write_song(c.tmp / "clip.wav", seed=5, seconds=0.5)),
                    "--library", str(c.lib), *TINY],
         1, r"clip\.wav: it is 0\.5 s long; a query needs at least 3 s of audio"),
    Case("library add: a streamed FLAC (no length in its header) is indexed",
         lambda c: (shutil.move(_streamed_flac(c), c.songs / "streamed.flac"),
                    ["library", "add", str(c.songs), "--library", str(c.lib), *TINY])[-1],
         0, r"0 moved/duplicate"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli_bad_input(case: Case, ctx: Ctx, capsys: pytest.CaptureFixture[str]) -> None:
    before = songs_of(ctx.lib)
    argv = case.argv(ctx)
    capsys.readouterr()
    rc, text = run_cli(argv, capsys)
    assert rc == case.rc, text
    assert re.search(case.message, text), text
    after = songs_of(ctx.lib)
    for h, song in before.items():  # nothing lost
        assert after.get(h) == song, f"song {h[:8]} changed or was lost"


# --- the engine directly ----------------------------------------------------------------------


def test_streamed_flac_decodes_whole(ctx: Ctx) -> None:
    streamed = load_audio(_streamed_flac(ctx))
    original = load_audio(ctx.song(0))
    assert streamed.n == original.n
    np.testing.assert_allclose(streamed.samples, original.samples, atol=1e-4)


def test_cut_flac_is_refused_by_the_engine(ctx: Ctx) -> None:
    with pytest.raises(CrossmixError, match=r"cut\.flac: it is truncated"):
        load_audio(_cut_flac(ctx))


def test_fifo_is_refused_before_it_is_opened(ctx: Ctx) -> None:
    from core.audio import file_hash

    p = _fifo(ctx)
    # Opening the pipe would block this test for good; the error comes from a stat.
    with pytest.raises(CrossmixError, match="named pipe"):
        load_audio(p)
    with pytest.raises(CrossmixError, match="named pipe"):
        file_hash(p)


# --- key shift beyond the limit (the advice must not say "suits") ---------------------------------


def _analysis(root: int, mode: str = "major") -> object:
    from core.analysis import Analysis, key_name

    beats = np.arange(0.5, 30.0, 0.5)
    return Analysis(tempo=120.0, beats=beats, downbeats=None, key=key_name(root, mode),
                    key_root=root, key_mode=mode, lufs=-14.0, duration=30.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("query, match, limit, applied, advice", [
    (9, 5, 3, 0, r"not shifted: F major needs \+4 semitones to fit A major, 1 beyond the "
                 r"3-semitone limit"),
    (9, 5, 4, 4, r"shifted \+4 semitones to fit A major"),
    (9, 3, 3, 0, r"not shifted: D# major needs \+6 semitones to fit A major, 3 beyond"),
    (9, 9, 3, 0, r"not shifted \(A major suits A major\)"),
])
def test_key_shift_out_of_range_is_said(query: int, match: int, limit: int, applied: int,
                                        advice: str) -> None:
    from core.remix import compatibility

    rep = compatibility(_analysis(query), _analysis(match), similarity=0.5,  # type: ignore[arg-type]
                        max_shift=limit)
    assert rep.semitone_shift == applied
    assert re.search(advice, rep.key_advice(applied=rep.semitone_shift)), rep.key_advice(
        applied=rep.semitone_shift)
    assert "suits" not in rep.key_advice(applied=0) or rep.needed_shift == 0


@pytest.fixture(scope="module")
def keyed_songs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A query in A major and a match in F major (+4 semitones apart), both 120 BPM."""
    from synth_songs import make_song

    d = tmp_path_factory.mktemp("keyed")
    out = []
    for name, root in (("query A.wav", 9), ("match F.wav", 5)):
        s = make_song(tempo=120.0, key_root=root, key_mode="major", seconds=8.0, seed=root)
        sf.write(d / name, s.mix.samples.T, s.mix.sr)
        out.append(d / name)
    return out[0], out[1]


def test_remix_says_the_key_shift_is_out_of_range_and_tags_both_sources(
        keyed_songs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import mutagen

    query, match = keyed_songs
    out = tmp_path / "mix v1.0.flac"
    rc, text = run_cli(["remix", str(query), str(match), "-o", str(out), "--key-match",
                        "--model", "tiny", "--no-cache"], capsys)
    assert rc == 0, text
    assert "shift +0 st" in text
    assert re.search(r"not shifted: F major needs \+4 semitones to fit A major, 1 beyond the "
                     r"3-semitone limit \(--max-shift 4 allows it\)", text), text
    comment = " ".join(mutagen.File(str(out))["comment"])
    assert "query A.wav" in comment and "match F.wav" in comment, comment


# --- a query without a vocal -------------------------------------------------------------------


class NoVocalSeparator(Separator):
    """The tiny separator, but it finds no vocal at all (as Spleeter does in white noise)."""

    def separate(self, audio, **kw):  # type: ignore[no-untyped-def,override]
        from core.audio import Audio
        from core.separation import Stems

        s = super().separate(audio, **kw)
        silent = Audio(np.zeros_like(s.vocals.samples), s.vocals.sr, s.vocals.source)
        return Stems(mix=s.mix, vocals=silent, accompaniment=s.mix)


_TINY_SEPARATOR = Separator.tiny


def no_vocal_separator(**_kw: object) -> NoVocalSeparator:
    base = _TINY_SEPARATOR(seed=0)
    return NoVocalSeparator(base._nets, model_id="novocal-" + base.model_id, name="no vocal")


def _white_noise(path: Path, seconds: float = 6.0) -> Path:
    rng = np.random.default_rng(3)
    sf.write(path, (0.2 * rng.standard_normal((int(seconds * SR), 2))).astype(np.float32), SR)
    return path


def test_match_without_a_vocal_says_so_instead_of_ranking(
        ctx: Ctx, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Separator, "tiny", staticmethod(no_vocal_separator))
    noise = _white_noise(ctx.tmp / "noise.wav")
    before = songs_of(ctx.lib)
    for space in ("vocal->mix", "vocal->vocal", "[M,V]"):
        rc, text = run_cli(["match", str(noise), "--space", space, "--library", str(ctx.lib),
                            *TINY], capsys)
        assert rc == 1, text
        assert re.search(r"noise\.wav: no singing voice was found in it .*space mix->mix", text)
        assert "sim" not in text  # no ranked list
    rc, text = run_cli(["match", str(noise), "--space", "mix->mix", "--library", str(ctx.lib),
                        *TINY], capsys)
    assert rc == 0 and len(re.findall(r"^ +\d+ +0\.\d+", text, re.M)) == 3, text  # by the mix
    assert songs_of(ctx.lib) == before


def test_engine_refuses_a_query_without_a_vocal(ctx: Ctx) -> None:
    from core.errors import NoVocalError

    with Library.open(ctx.lib, encoders=EncoderPair.tiny()) as lib:
        with pytest.raises(NoVocalError, match="no singing voice"):
            lib.search(_white_noise(ctx.tmp / "noise.wav"), separator=no_vocal_separator())
        # with the tiny separator (whose random "vocal" is loud enough) the same file is ranked
        res = lib.search(_white_noise(ctx.tmp / "noise.wav"), separator=Separator.tiny(seed=0))
        assert len(res.matches) == 3
