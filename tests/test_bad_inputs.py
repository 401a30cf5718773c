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

from cli import main
from core.api import Crossmix
from core.audio.decode import load_audio
from core.embedding.encoders import EncoderPair
from core.errors import CrossmixError
from core.library.catalog import Catalog
from core.library.library import Library
from core.separation.separator import Separator

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


def without_analysis(songs: dict[str, object]) -> dict[str, object]:
    """``songs_of`` less the tempo and key a song's analysis caches on first use."""
    return {h: {k: v for k, v in d.items() if k not in ("tempo", "key")}  # type: ignore[union-attr]
            for h, d in songs.items()}


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
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse refusing an option value: status 2 and a usage line
        rc = int(exc.code or 0)
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


def _text_as_mp3(c: Ctx) -> Path:
    p = c.tmp / "lyrics.mp3"
    p.write_text("not a song, only its lyrics\n" * 40)
    return p


def _empty(c: Ctx) -> Path:
    p = c.tmp / "empty.wav"
    p.write_bytes(b"")
    return p


def _float_wav(c: Ctx, name: str, bad: float) -> Path:
    """A float WAV whose samples hold NaN or inf (a damaged export)."""
    x = (0.1 * np.random.default_rng(4).standard_normal((5 * SR, 2))).astype(np.float32)
    x[SR : SR + 500] = bad
    p = c.tmp / name
    sf.write(p, x, SR, subtype="FLOAT")
    return p


def _cut_wav(c: Ctx, fraction: float, name: str) -> Path:
    data = c.song(2).read_bytes()
    p = c.tmp / name
    p.write_bytes(data[: max(44, int(len(data) * fraction))])
    return p


def _silence(c: Ctx) -> Path:
    p = c.tmp / "silence.wav"
    sf.write(p, np.zeros((5 * SR, 2), np.float32), SR)
    return p


def _existing(path: Path) -> Path:
    """A file the user already has where Crossmix would write (it must be kept as it is)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"the user's own file")
    return path


def _kept(path: Callable[[Ctx], Path]) -> Callable[[Ctx], None]:
    def check(c: Ctx) -> None:
        assert path(c).read_bytes() == b"the user's own file", f"{path(c)} was overwritten"

    return check


def _nothing_in(folder: Callable[[Ctx], Path]) -> Callable[[Ctx], None]:
    def check(c: Ctx) -> None:
        f = folder(c)
        assert not f.is_dir() or not any(f.iterdir()), sorted(f.iterdir())

    return check


def _skip_with_a_gpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: --device cuda is valid here")


def _encoders_without_config(c: Ctx) -> Path:
    p = c.tmp / "mine.safetensors"
    p.write_bytes(b"\0" * 64)
    return p


@dataclass(frozen=True)
class Case:
    id: str
    #: builds the inputs in the case's context and returns the command line
    argv: Callable[[Ctx], list[str]]
    rc: int
    #: regular expression the output (stdout + stderr) must match
    message: str
    #: what else must hold afterwards (besides the library's songs being intact)
    check: Callable[[Ctx], None] | None = None


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
         lambda c: ["separate", str(_fifo(c)), "-o", str(c.tmp / "out"), "--separator", "tiny"],
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
    Case("library add where every file fails exits 1",
         lambda c: (_cut_flac(c), (c.tmp / "bad").mkdir(), shutil.move(c.tmp / "cut.flac", c.tmp / "bad"),
                    ["library", "add", str(c.tmp / "bad"), "--library", str(c.tmp / "new lib"),
                     *TINY])[-1],
         1, r"0 indexed.*1 failed.*\n.*none of the 1 audio file\(s\) could be indexed"),
    Case("library status with a mistyped --library does not create a library",
         lambda c: ["library", "status", "--library", str(c.tmp / "libary")],
         1, r"libary: there is no library here \(no catalog\.sqlite\); check the folder name"),
    Case("library scan with a mistyped --library",
         lambda c: ["library", "scan", "--library", str(c.tmp / "libary"), *TINY],
         1, r"libary: there is no library here"),
    Case("match --space vocal->vocal on a fast-mode library",
         lambda c: ["match", str(c.song(0)), "--space", "vocal->vocal", "--library", str(c.lib),
                    *TINY],
         1, r"the space vocal->vocal needs songs scanned in full mode .*--mode full"),
    Case("match --space [M,V] on a fast-mode library",
         lambda c: ["match", str(c.song(0)), "--space", "[M,V]", "--library", str(c.lib), *TINY],
         1, r"the space \[M,V\] needs songs scanned in full mode"),
    Case("remix -o with an unknown extension is refused before any separation",
         lambda c: ["remix", str(c.song(0)), str(c.song(1)), "-o", str(c.tmp / "out.xyz"),
                    "--separator", "tiny"],
         1, r"^crossmix: error: .*out\.xyz: cannot export xyz; use \.wav, \.flac, \.mp3 or \.ogg\.\n$"),
    Case("library add: a streamed FLAC (no length in its header) is indexed",
         lambda c: (shutil.move(_streamed_flac(c), c.songs / "streamed.flac"),
                    ["library", "add", str(c.songs), "--library", str(c.lib), *TINY])[-1],
         0, r"0 moved/duplicate"),
    # --- files that are not (usable) audio ---
    Case("match with an empty file",
         lambda c: ["match", str(_empty(c)), "--library", str(c.lib), *TINY],
         1, r"empty\.wav: the file is empty \(0 bytes\)"),
    Case("match with a text file named .mp3",
         lambda c: ["match", str(_text_as_mp3(c)), "--library", str(c.lib), *TINY],
         1, r"lyrics\.mp3: this is not audio: it is a text file\. Choose a song file"),
    Case("match with a folder as the song",
         lambda c: ["match", str(c.songs), "--library", str(c.lib), *TINY],
         1, r"songs: this is a folder, not a file"),
    Case("match with a file that does not exist",
         lambda c: ["match", str(c.tmp / "gone.wav"), "--library", str(c.lib), *TINY],
         1, r"gone\.wav: no such file\. Check that the file exists"),
    Case("match with digital silence",
         lambda c: ["match", str(_silence(c)), "--library", str(c.lib), *TINY],
         1, r"silence\.wav: it is silent \(peak below -80 dBFS\)"),
    Case("match with NaN samples",
         lambda c: ["match", str(_float_wav(c, "nan.wav", np.nan)), "--library", str(c.lib),
                    *TINY],
         1, r"nan\.wav: it decodes to invalid \(NaN/inf\) samples\. The file is damaged"),
    Case("library add: a file of infinite samples is refused, the others kept",
         lambda c: (shutil.move(_float_wav(c, "inf.wav", np.inf), c.songs / "inf.wav"),
                    ["library", "add", str(c.songs), "--library", str(c.lib), *TINY])[-1],
         0, r"0 indexed.*3 unchanged, 1 failed"),
    Case("match with a cut WAV",
         lambda c: ["match", str(_cut_wav(c, 1 / 3, "cut.wav")), "--library", str(c.lib), *TINY],
         1, r"cut\.wav: it is truncated: the header promises \d+ bytes of audio but only \d+"),
    Case("separate a WAV that is only a header",
         lambda c: ["separate", str(_cut_wav(c, 0, "header.wav")), "-o", str(c.tmp / "out"),
                    "--separator", "tiny", "--no-cache"],
         1, r"header\.wav: it is truncated: .* but only 0 are there",
         _nothing_in(lambda c: c.tmp / "out")),
    Case("library scan: a broken link in the folder is recorded, the rest kept",
         lambda c: (os.symlink(c.tmp / "moved away.wav", c.songs / "link.wav"),
                    ["library", "scan", "--library", str(c.lib), *TINY])[-1],
         0, r"3 unchanged, 1 failed"),
    # --- paths and options ---
    Case("library add a path that does not exist",
         lambda c: ["library", "add", str(c.tmp / "Musik"), "--library", str(c.lib), *TINY],
         1, r"Musik: no such file or folder; check the path and add it again"),
    Case("library remove a folder that is not in the library",
         lambda c: (c.tmp.joinpath("other").mkdir(),
                    ["library", "remove", str(c.tmp / "other"), "--library", str(c.lib)])[-1],
         1, r"not in this library .*'crossmix library status' lists its folders"),
    Case("match -k 0 is refused (not 'no matches')",
         lambda c: ["match", str(c.song(0)), "-k", "0", "--library", str(c.lib), *TINY],
         2, r"argument -k: 0: ask for at least 1 match"),
    Case("match with encoder weights that do not exist",
         lambda c: ["match", str(c.song(0)), "--library", str(c.lib), "--encoders",
                    str(c.tmp / "mine.safetensors"), "--separator", "tiny"],
         1, r"mine\.safetensors: encoder weights not found\. Train a model"),
    Case("match with encoder weights missing their JSON config",
         lambda c: ["match", str(c.song(0)), "--library", str(c.lib), "--encoders",
                    str(_encoders_without_config(c)), "--separator", "tiny"],
         1, r"mine\.json: the encoder config \(JSON\) is missing beside mine\.safetensors; "
            r"copy both files together"),
    Case("separate --device cuda without a GPU",
         lambda c: (_skip_with_a_gpu(), ["separate", str(c.song(0)), "-o", str(c.tmp / "out"),
                                         "--separator", "tiny", "--device", "cuda"])[-1],
         1, r"CUDA was requested but no usable NVIDIA GPU was found; use --device cpu or auto",
         _nothing_in(lambda c: c.tmp / "out")),
    Case("separate --device with an unknown name",
         lambda c: ["separate", str(c.song(0)), "-o", str(c.tmp / "out"), "--separator", "tiny",
                    "--device", "tpu"],
         1, r"Unknown device 'tpu': use auto, cpu or cuda"),
    # --- what the user already has must not be overwritten ---
    Case("separate -o naming a file, not a folder, is refused before separating",
         lambda c: ["separate", str(c.song(0)), "-o", str(_existing(c.tmp / "stems")),
                    "--separator", "tiny", "--no-cache"],
         1, r"^crossmix: error: .*stems: -o must be a folder, and this is a file",
         _kept(lambda c: c.tmp / "stems")),
    Case("separate where the stems exist already",
         lambda c: (_existing(c.tmp / "out" / "song 0_vocals.wav"),
                    ["separate", str(c.song(0)), "-o", str(c.tmp / "out"), "--separator", "tiny",
                     "--no-cache"])[-1],
         1, r"song 0_vocals\.wav: the file exists; use --overwrite or another -o folder",
         _kept(lambda c: c.tmp / "out" / "song 0_vocals.wav")),
    Case("separate two songs of the same name into one folder",
         lambda c: (shutil.copytree(c.songs, c.tmp / "copy"),
                    ["separate", str(c.song(0)), str(c.tmp / "copy" / "song 0.wav"), "-o",
                     str(c.tmp / "out"), "--separator", "tiny", "--no-cache"])[-1],
         1, r"copy/song 0\.wav: its stems would have the same names as those of .*song 0\.wav; "
            r"separate it into another -o folder\..*1 of 2 file\(s\) failed"),
    Case("remix -o naming a file that exists",
         lambda c: ["remix", str(c.song(0)), str(c.song(1)), "-o",
                    str(_existing(c.tmp / "mine.wav")), "--separator", "tiny", "--no-cache"],
         1, r"mine\.wav: the file exists; use --overwrite or another -o name",
         _kept(lambda c: c.tmp / "mine.wav")),
    Case("remix over a silent match",
         lambda c: ["remix", str(c.song(0)), str(_silence(c)), "-o", str(c.tmp / "x.wav"),
                    "--separator", "tiny", "--no-cache"],
         1, r"silence\.wav: it is silent .*choose another song",
         lambda c: None if not (c.tmp / "x.wav").exists() else pytest.fail("x.wav written")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli_bad_input(case: Case, ctx: Ctx, capsys: pytest.CaptureFixture[str]) -> None:
    before = songs_of(ctx.lib)
    argv = case.argv(ctx)
    capsys.readouterr()
    rc, text = run_cli(argv, capsys)
    assert rc == case.rc, text
    assert re.search(case.message, text, re.S), text
    after = songs_of(ctx.lib)
    for h, song in before.items():  # nothing lost
        assert after.get(h) == song, f"song {h[:8]} changed or was lost"
    assert sorted(p.name for p in ctx.songs.iterdir() if p.name.startswith("song ")) == [
        "song 0.wav", "song 1.wav", "song 2.wav"]
    if case.check is not None:
        case.check(ctx)


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
    from core.audio.decode import file_hash

    p = _fifo(ctx)
    # Opening the pipe would block this test for good; the error comes from a stat.
    with pytest.raises(CrossmixError, match="named pipe"):
        load_audio(p)
    with pytest.raises(CrossmixError, match="named pipe"):
        file_hash(p)


# --- key shift beyond the limit (the advice must not say "suits") ---------------------------------


def _analysis(root: int, mode: str = "major") -> object:
    from core.remix.analysis import Analysis, key_name

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
    from core.remix.render import compatibility

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
                        "--separator", "tiny", "--no-cache"], capsys)
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
        from core.audio.decode import Audio
        from core.separation.separator import Stems

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
    # nothing lost or changed; the compatibility report only cached the matches' tempo and key
    assert without_analysis(songs_of(ctx.lib)) == without_analysis(before)


def test_engine_refuses_a_query_without_a_vocal(ctx: Ctx) -> None:
    from core.errors import NoVocalError

    def engine(separator: Separator) -> Crossmix:
        return Crossmix(library=ctx.lib, separator=separator, encoders=EncoderPair.tiny())

    with engine(no_vocal_separator()) as cx, pytest.raises(NoVocalError, match="no singing voice"):
        cx.library().search(cx.embed_query(_white_noise(ctx.tmp / "noise.wav")))
    # with the tiny separator (whose random "vocal" is loud enough) the same file is ranked
    with engine(Separator.tiny(seed=0)) as cx:
        res = cx.library().search(cx.embed_query(_white_noise(ctx.tmp / "noise.wav")))
        assert len(res.matches) == 3


# --- storage faults: read-only library, full disk, damaged catalog ----------------------------------


@pytest.fixture
def tmpfs(tmp_path: Path):  # type: ignore[no-untyped-def]
    """``mount(size_kb)`` -> a fresh small tmpfs folder (root only); unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    mounted: list[Path] = []

    def mount(size_kb: int) -> Path:
        d = tmp_path / f"fs{len(mounted)}"
        d.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(d)],
                          capture_output=True).returncode:
            pytest.skip("cannot mount a tmpfs here")
        mounted.append(d)
        return d

    yield mount
    for d in reversed(mounted):
        subprocess.run(["umount", "-l", str(d)], check=False)


def _checkpointed_copy(lib: Path, dest: Path) -> Path:
    cat = Catalog.open(lib / "catalog.sqlite")
    with cat._lock:
        cat._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cat.close()
    shutil.copytree(lib, dest)
    return dest


def _fill(folder: Path, *, leave_kb: int) -> None:
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    (folder / "filler").write_bytes(b"\0" * max(0, free - leave_kb * 1024))


def _more_songs(c: Ctx, n: int) -> Path:
    d = c.tmp / "more"
    for i in range(n):
        write_song(d / f"more {i}.wav", seed=100 + i, seconds=3.0)
    return d


def test_read_only_library_on_add(ctx: Ctx, tmpfs, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    lib = _checkpointed_copy(ctx.lib, tmpfs(4096) / "lib")
    before = songs_of(lib)
    subprocess.run(["mount", "-o", "remount,ro", str(lib.parent)], check=True)
    rc, text = run_cli(["library", "add", str(_more_songs(ctx, 1)), "--library", str(lib),
                        *TINY], capsys)
    assert rc == 1, text
    assert re.search(r"catalog\.sqlite: the library may not be written .*nothing was changed\. "
                     r"Make .*lib writable, or use another library folder", text), text
    subprocess.run(["mount", "-o", "remount,rw", str(lib.parent)], check=True)
    assert songs_of(lib) == before


def test_disk_full_mid_scan(ctx: Ctx, tmpfs, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    from core.library.catalog import check_catalog

    fs = tmpfs(1024)
    lib = _checkpointed_copy(ctx.lib, fs / "lib")
    before = songs_of(lib)
    more = _more_songs(ctx, 12)
    rc, text = run_cli(["library", "add", str(more), "--no-scan", "--library", str(lib)], capsys)
    assert rc == 0, text
    _fill(fs, leave_kb=24)
    rc, text = run_cli(["library", "scan", "--library", str(lib), *TINY], capsys)
    assert rc == 1, text
    assert re.search(r"the disk holding the library is full .*nothing already in the library "
                     r"was lost\. Free some space and run the command again", text), text
    assert "damaged" not in text
    (fs / "filler").unlink()  # space again: nothing was lost, the scan resumes
    assert check_catalog(lib / "catalog.sqlite") == []
    after = songs_of(lib)
    assert all(after.get(h) == s for h, s in before.items())
    rc, text = run_cli(["library", "scan", "--library", str(lib), *TINY], capsys)
    assert rc == 0, text
    assert len(songs_of(lib)) == len(before) + 12


def _damage_table(lib: Path, table: str) -> None:
    """Overwrite part of the first page of ``table`` with garbage."""
    import sqlite3

    conn = sqlite3.connect(lib / "catalog.sqlite")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = conn.execute("SELECT rootpage FROM sqlite_master WHERE name=?", (table,)).fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(lib / "catalog.sqlite", "r+b") as fh:
        fh.seek((page - 1) * size + 100)
        fh.write(np.random.default_rng(0).integers(0, 256, 1500, dtype=np.uint8).tobytes())


def _bad_utf8_artist(lib: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(lib / "catalog.sqlite")
    conn.execute("UPDATE songs SET artist = CAST(x'41ff42' AS TEXT) WHERE id = "
                 "(SELECT MIN(id) FROM songs)")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("damage, message", [
    (lambda lib: _damage_table(lib, "embeddings"), "database disk image is malformed"),
    (_bad_utf8_artist, "Could not decode to UTF-8 column 'artist'"),
], ids=["malformed pages", "invalid UTF-8 in a tag"])
def test_damaged_catalog_is_said_then_repaired(ctx: Ctx, capsys: pytest.CaptureFixture[str],
                                               damage, message) -> None:  # type: ignore[no-untyped-def]
    before = songs_of(ctx.lib)
    damage(ctx.lib)
    rc, text = run_cli(["match", str(ctx.song(0)), "--library", str(ctx.lib), *TINY], capsys)
    assert rc == 1, text
    assert "the library catalog is damaged" in text and message in text, text
    assert f"crossmix library repair --library {ctx.lib}" in text
    rc, text = run_cli(["library", "repair", "--check", "--library", str(ctx.lib)], capsys)
    assert rc == 1 and "the catalog is damaged" in text, text
    rc, text = run_cli(["library", "repair", "--library", str(ctx.lib)], capsys)
    assert rc == 0 and "salvaged:" in text, text
    assert list(ctx.lib.glob("catalog.sqlite.damaged-*")), "the damaged file was not kept"
    rc, text = run_cli(["library", "scan", "--library", str(ctx.lib), *TINY], capsys)
    assert rc == 0, text
    rc, text = run_cli(["library", "repair", "--check", "--library", str(ctx.lib)], capsys)
    assert rc == 0 and "the catalog is sound" in text, text
    after = songs_of(ctx.lib)
    assert set(after) == set(before)  # every song is back, with the same vectors
    for h, song in before.items():
        assert after[h]["vectors"] == song["vectors"]  # type: ignore[index]
    rc, text = run_cli(["match", str(ctx.song(0)), "--library", str(ctx.lib), *TINY], capsys)
    assert rc == 0, text


def test_damaged_index_is_announced_once_without_a_source_line(ctx: Ctx) -> None:
    import sys

    (ctx.lib / "index" / "M.faiss").write_bytes(b"garbage")
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "match", str(ctx.song(0)), "--library", str(ctx.lib),
         *TINY], capture_output=True, text=True, cwd=Path(__file__).parents[1],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("the search index is damaged") == 1, proc.stderr
    assert "warnings.warn" not in proc.stderr and "Traceback" not in proc.stderr
    assert "song 1" in proc.stdout


def test_remix_stems_on_a_full_disk_write_nothing(keyed_songs: tuple[Path, Path], tmpfs,  # type: ignore[no-untyped-def]
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    query, match = keyed_songs
    mix_bytes = int(8.0 * 44100 * 2 * 3)  # 8 s of 24-bit stereo wav
    out_dir = tmpfs(int(1.6 * mix_bytes / 1024))  # room for the mix, not for its stems too
    out = out_dir / "cross.wav"
    rc, text = run_cli(["remix", str(query), str(match), "-o", str(out), "--full", "--stems",
                        "--separator", "tiny", "--no-cache"], capsys)
    assert rc == 1, text
    assert re.search(r"cross_vocals\.wav: could not write it .*disk.*Nothing was written: the "
                     r"mix and its stems are written together or not at all\.", text), text
    assert sorted(p.name for p in out_dir.iterdir()) == []  # no mix without its stems, no debris


# --- a flipped bit in a stored vector ---------------------------------------------------------------


def test_flipped_embedding_value_is_caught_and_re_embedded(
        ctx: Ctx, capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    before = songs_of(ctx.lib)
    conn = sqlite3.connect(ctx.lib / "catalog.sqlite")
    sid, blob = conn.execute("SELECT song_id, vector FROM embeddings WHERE space='M' "
                             "ORDER BY song_id LIMIT 1").fetchone()
    flipped = bytearray(blob)
    flipped[41] ^= 0x10  # one bit of one float
    conn.execute("UPDATE embeddings SET vector=? WHERE song_id=? AND space='M'",
                 (bytes(flipped), sid))
    conn.commit()
    conn.close()
    cat = Catalog.open(ctx.lib / "catalog.sqlite")
    assert cat.damaged_vector_songs() == {sid}
    assert sid not in cat.vectors("M", cat.model_id or "")[0]  # never searched with
    cat.close()
    rc, text = run_cli(["library", "status", "--library", str(ctx.lib)], capsys)
    assert rc == 0 and re.search(r"damaged +1 songs have a stored vector that fails its checksum",
                                 text), text
    rc, text = run_cli(["library", "scan", "--library", str(ctx.lib), *TINY], capsys)
    assert rc == 0 and "1 re-embedded" in text, text
    assert songs_of(ctx.lib) == before  # the same vector again: nothing lost
    rc, text = run_cli(["library", "status", "--library", str(ctx.lib)], capsys)
    assert "damaged" not in text, text


def test_catalog_of_schema_1_gets_checksums(tmp_path: Path) -> None:
    import sqlite3

    from core.library.catalog import SCHEMA_VERSION, SongInfo

    cat = Catalog.open(tmp_path / "c.sqlite")
    cat.put_song(path="/a.wav", size=1, mtime_ns=1, info=SongInfo(content_hash="a" * 64, size=1),
                 vectors={"M": np.ones(4, np.float32)}, model_id="m", mode="fast")
    cat.close()
    conn = sqlite3.connect(tmp_path / "c.sqlite")  # as Crossmix wrote it before checksums
    conn.executescript("CREATE TABLE old AS SELECT song_id, space, model_id, dim, vector "
                       "FROM embeddings; DROP TABLE embeddings; "
                       "ALTER TABLE old RENAME TO embeddings;")
    conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    cat = Catalog.open(tmp_path / "c.sqlite")
    assert cat.get_meta("schema_version") == str(SCHEMA_VERSION)
    assert cat._query("SELECT COUNT(*) FROM embeddings WHERE checksum IS NULL")[0][0] == 0
    assert cat.damaged_vector_songs() == set()
    cat.close()
