"""The typed training contract: events round-trip through JSON, a TrainConfig through its file,
``crossmix train --config`` (options given override the file), ``--from-library`` on a tiny
library, the data sources a run folder is made from, and no import loop inside ``training``."""

from __future__ import annotations

import argparse
import ast
import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import TrainingError
from training.events import (
    QSEP_EVENTS,
    TRAIN_EVENTS,
    BatchEvent,
    DoneEvent,
    EpochEvent,
    ErrorEvent,
    Event,
    EventError,
    MalformedEventError,
    PrepareEvent,
    QSepResumeEvent,
    QSepTrainEvent,
    QSepValEvent,
    ResumeEvent,
    SplitEvent,
    StartEvent,
    UnknownEventError,
    WarningEvent,
    parse_event,
    parse_qsep_event,
)
from training.trainer import TrainConfig

REPO = Path(__file__).resolve().parent.parent

EXAMPLES: list[Event] = [
    SplitEvent(singers=8, songs=16, train=4, val=2, test=2, skipped=[("/a.wav", "no artist tag")], seed=3),
    PrepareEvent(stage="features", done=3, total=16, unit="songs", message="", eta_s=12.5),
    PrepareEvent(stage="backbone", done=0, total=1),
    StartEvent(device="cpu", width=0.125, loss="cross-sp", arch="cnn", sampling="real", pairs="label",
               teacher=0.0, lambdas=(0.25, 0.25, 0.25, 0.25), train_segments=64, train_singers=4,
               val_singers=2, batches_per_epoch=3, max_epochs=2, parameters=12345),
    ResumeEvent(epoch=1, batch=2, best_val_loss=0.75),
    BatchEvent(epoch=0, batch=3, batches=3, step=3, loss=0.5, terms={"l1": 0.1, "teacher": 0.2}, lr=0.01,
               elapsed_s=1.5, epoch_eta_s=0.0, eta_s=4.0),
    EpochEvent(epoch=0, train_loss=0.5, val_loss=0.6, val_source="validation singers", best_val_loss=0.6,
               best_epoch=0, epochs_since_best=0, improved=True, checkpoint="/run/best.safetensors",
               elapsed_s=2.0, eta_s=2.0),
    DoneEvent(stopped="max_epochs", resumable=False, best_checkpoint="/run/best.safetensors",
              best_val_loss=0.6, best_epoch=1, epochs=2, evaluation="/run/evaluation.json"),
    DoneEvent(stopped="interrupted", resumable=True, best_checkpoint=None, best_val_loss=None,
              state="/run/state.pt"),
    ErrorEvent(type="TrainingError", message="no labelled songs"),
    WarningEvent(message="2 songs could not be read", files=[("/b.wav", "corrupt")]),
    QSepResumeEvent(step=10, elapsed_s=60.0),
    QSepTrainEvent(step=10, elapsed_s=61.2, loss=0.5, rec=0.4, kl=1.5, latent=0.3, lr=0.001),
    QSepValEvent(step=20, elapsed_s=120.0, val_sisdri_mean=3.2, val_sisdri_median=3.0,
                 by_class={"drums": 4.1, "bass": 1.5}),
]


# --- events -------------------------------------------------------------------------------------


def test_every_event_kind_has_an_example() -> None:
    assert {type(e) for e in EXAMPLES} == set(TRAIN_EVENTS) | set(QSEP_EVENTS)
    assert len({c.kind for c in TRAIN_EVENTS}) == len(TRAIN_EVENTS)  # kinds are unique
    assert len({c.kind for c in QSEP_EVENTS}) == len(QSEP_EVENTS)


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: f"{type(e).__name__}")
def test_events_round_trip_through_json_lines(event: Event) -> None:
    line = event.to_json()
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["event"] == event.kind
    assert set(doc) == {"event"} | {f.metadata.get("json", f.name) for f in dataclasses.fields(event)}
    parse = parse_qsep_event if type(event) in QSEP_EVENTS else parse_event
    assert parse(line) == event
    assert parse(line.encode()) == event
    assert type(event).from_json(line) == event


def test_the_two_families_read_their_own_resume() -> None:
    assert isinstance(parse_event('{"event": "resume", "epoch": 1, "batch": 2, "best_val_loss": 0.5}'),
                      ResumeEvent)
    assert isinstance(parse_qsep_event('{"event": "resume", "step": 4, "elapsed_s": 1}'), QSepResumeEvent)
    with pytest.raises(MalformedEventError, match="'epoch' is missing"):
        parse_event('{"event": "resume", "step": 4, "elapsed_s": 1}')


def test_unknown_kinds_and_malformed_lines_raise_clear_errors() -> None:
    with pytest.raises(UnknownEventError) as info:
        parse_event('{"event": "gradient-norm", "value": 3}')
    assert info.value.kind == "gradient-norm" and "batch" in str(info.value)
    assert isinstance(info.value, EventError) and isinstance(info.value, TrainingError)
    for line, match in [("epoch 3 done", "Not a JSON line"), ("[1, 2]", "Not a JSON object"),
                        ('{"epoch": 1}', "No \"event\" kind"),
                        ('{"event": "resume", "epoch": true, "batch": 1, "best_val_loss": 1}',
                         "'epoch': expected an integer, got True"),
                        ('{"event": "batch", "epoch": 0}', "'batch' is missing"),
                        ('{"event": "done", "stopped": "tired", "resumable": false, '
                         '"best_checkpoint": null, "best_val_loss": null}', "'stopped': expected one of"),
                        ('{"event": "warning", "message": "m", "files": [["a"]]}',
                         r"'files'\[0\]: expected a list of 2")]:
        with pytest.raises(MalformedEventError, match=match):
            parse_event(line)


def test_newer_fields_are_ignored_and_defaults_fill_older_lines() -> None:
    e = parse_event('{"event": "warning", "message": "m", "severity": "low"}')
    assert e == WarningEvent(message="m", files=[])
    e = parse_event('{"event": "prepare", "stage": "features", "done": 1, "total": 2}')
    assert isinstance(e, PrepareEvent) and e.eta_s is None and e.done == 1.0 and isinstance(e.done, float)


# --- TrainConfig files --------------------------------------------------------------------------


def _non_default(tmp_path: Path) -> TrainConfig:
    return TrainConfig(data=str(tmp_path / "songs"), out=str(tmp_path / "run"), loss="infonce",
                       lambdas=(0.5, 0.0, 0.25, 1.0), margin=0.3, width=0.125, embedding_dim=128,
                       max_epochs=7, batches_per_epoch=11, batch_size=6, negatives=3, patience=2, lr=0.02,
                       momentum=0.8, lr_decay=1e-5, seed=5, segments_per_song=4, val_fraction=0.2,
                       test_fraction=0.15, val_batches=3, vocals="stems", separator="tiny",
                       cache=str(tmp_path / "cache"), device="cpu", amp=False, evaluate=False, log_every=2,
                       sampling="both", pairs="agnostic", temperature=0.07, arch="ge2e", head_hidden=64,
                       teacher=0.5, split_file=str(tmp_path / "split.json"))


def test_config_file_round_trip(tmp_path: Path) -> None:
    cfg = _non_default(tmp_path)
    assert all(getattr(cfg, f.name) != f.default for f in dataclasses.fields(TrainConfig)
               if f.default is not dataclasses.MISSING)  # every field is exercised
    assert TrainConfig.load(cfg.save(tmp_path / "a" / "cfg.json")) == cfg
    plain = TrainConfig(data=str(tmp_path / "d"), out=str(tmp_path / "o"))
    assert TrainConfig.load(plain.save(tmp_path / "plain.json")) == plain
    assert json.loads((tmp_path / "plain.json").read_text())["lambdas"] is None  # "the loss's own"
    # the checkpoint's record of a config (lambdas resolved) reads back to the same weights
    again = TrainConfig.from_dict(plain.to_dict())
    assert again.weights() == plain.weights() and again.identity() == plain.identity()


def test_config_file_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "cfg.json").write_text(json.dumps(
        {"data": "../songs", "out": "run", "cache": "", "split_file": str(tmp_path / "s.json")}))
    cfg = TrainConfig.load(tmp_path / "exp" / "cfg.json")
    assert cfg.data == str(tmp_path / "exp" / ".." / "songs") and cfg.out == str(tmp_path / "exp" / "run")
    assert cfg.cache == "" and cfg.split_file == str(tmp_path / "s.json")


def test_bad_config_files_are_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "cfg.json"
    for doc, match in [({"data": "d", "out": "o", "epochs": 5}, r"unknown key 'epochs' \(known: .*max_epochs"),
                       ({"data": "d", "out": "o", "max_epochs": "5"}, "'max_epochs': expected an integer"),
                       ({"data": "d", "out": "o", "lambdas": [1, 0]}, "'lambdas': expected a list of 4"),
                       ({"data": "d"}, "'out' is missing"), ([1], "expected a JSON object")]:
        path.write_text(json.dumps(doc))
        with pytest.raises(TrainingError, match=match):
            TrainConfig.load(path)
    path.write_text("{not json")
    with pytest.raises(TrainingError, match="not a readable training config"):
        TrainConfig.load(path)
    # a config written by another version (the app's run.json) is read without its extra keys
    assert TrainConfig.from_dict({"data": "d", "out": "o", "new_knob": 1}, strict=False).data == "d"


# --- crossmix train --config ---------------------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    from cli import build_parser

    return build_parser("train").parse_args(["train", *argv])


def test_options_given_override_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.train import train_config

    monkeypatch.chdir(tmp_path)
    file = _non_default(tmp_path).save(tmp_path / "cfg.json")
    cfg = train_config(_parse(["--config", str(file)]))
    assert cfg == _non_default(tmp_path)  # nothing given: the file as it is
    cfg = train_config(_parse(["--config", str(file), "--epochs", "3", "--loss", "cross",
                               "--out", "elsewhere", "--no-eval", "--log-every", "0",
                               "--lambdas", "1,0,0,0", "--device", "auto"]))
    assert (cfg.max_epochs, cfg.loss, cfg.out, cfg.lambdas, cfg.device) == (
        3, "cross", str(tmp_path / "elsewhere"), (1.0, 0.0, 0.0, 0.0), "auto")
    assert cfg.log_every == 1 and not cfg.evaluate
    # everything not given keeps the file's value, even where the file differs from the default
    same = {f.name for f in dataclasses.fields(TrainConfig)} - {"max_epochs", "loss", "out", "lambdas", "device",
                                                                "log_every"}
    assert all(getattr(cfg, k) == getattr(_non_default(tmp_path), k) for k in same)


def test_without_a_config_the_options_defaults_are_the_configs(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.train import train_config

    monkeypatch.chdir(tmp_path)
    cfg = train_config(_parse(["--data", "songs", "--out", "run"]))
    assert cfg == TrainConfig(data=str(tmp_path / "songs"), out=str(tmp_path / "run"))


def test_config_and_data_source_mistakes_are_refused(tmp_path: Path) -> None:
    from cli.train import train_config

    for argv, match in [(["--data", "d"], "--out DIR"), (["--out", "o"], "--data DIR, --from-library"),
                        (["--from-library", "--data", "d", "--out", "o"], "two sources of songs"),
                        (["--library", "lib", "--data", "d", "--out", "o"], "--library goes with --from-library")]:
        with pytest.raises(TrainingError, match=match):
            train_config(_parse(argv))
    assert train_config(_parse(["--from-library", "--out", "o"])).data == ""


def test_help_says_the_options_override_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    from cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--config FILE" in text and "--from-library" in text
    assert "Options given on the command line override the file's values" in text


# --- data sources -------------------------------------------------------------------------------


class _Song:
    def __init__(self, path: Path, artist: str | None) -> None:
        self.path, self.artist, self.title = str(path), artist, None


def test_library_songs_with_and_without_labels(tmp_path: Path) -> None:
    from training.sources import library_songs

    class Lib:
        root = tmp_path

        def songs(self) -> list[_Song]:
            return [_Song(tmp_path / "a.wav", None), _Song(tmp_path / "b.wav", "Singer")]

    songs = library_songs(Lib(), labels=False)
    assert [s.singer for s in songs] == [f"song:{tmp_path / 'a.wav'}", "Singer"]
    assert [s.song for s in songs] == ["a", "b"]
    assert len(library_songs(Lib())) == 1
    Lib.songs = lambda self: [_Song(tmp_path / "a.wav", None)]  # type: ignore[method-assign]
    with pytest.raises(TrainingError, match="label-agnostic"):
        library_songs(Lib())


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.toy import make_toy_corpus

    return make_toy_corpus(tmp_path_factory.mktemp("toy"), singers=4, songs=2, seconds=3.0, seed=4)


def test_a_manifest_under_another_name_is_read_relative_to_its_folder(tmp_path: Path, toy: Path) -> None:
    from training.sources import data_from_source, source_songs

    lists = tmp_path / "lists"
    lists.mkdir()
    with open(toy / "manifest.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    cols = rows[0]
    with open(lists / "my list.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in rows[1:]:
            w.writerow([os.path.relpath(toy / v, lists) if c in ("path", "vocals") and v else v
                        for c, v in zip(cols, r, strict=True)])
    got = source_songs(lists / "my list.csv")
    assert len(got) == 8 and {s.singer for s in got} == {f"Singer {i:02d}" for i in range(4)}
    assert all(s.path.is_file() and s.vocals is not None and s.vocals.is_file() for s in got)
    # the run's own manifest holds them with absolute paths, and reads back the same
    data = data_from_source(lists / "my list.csv", tmp_path / "run")
    assert data == tmp_path / "run" / "data"
    assert source_songs(data) == got == source_songs(toy)


# --- crossmix train --from-library ---------------------------------------------------------------


def _tagged_library(tmp_path: Path, toy: Path) -> Path:
    """A library of the toy songs as FLAC files tagged with their singer."""
    import mutagen.flac
    import soundfile as sf

    from core.embedding.encoders import EncoderPair
    from core.library.library import Library
    from core.separation.separator import Separator

    music = tmp_path / "music"
    music.mkdir()
    with open(toy / "manifest.csv", newline="") as fh:
        for row in list(csv.DictReader(fh)):
            dest = music / f"{row['singer']} - {row['song']}.flac"
            x, sr = sf.read(toy / row["path"])
            sf.write(dest, x, sr)
            tags = mutagen.flac.FLAC(dest)
            tags["artist"], tags["title"] = row["singer"], row["song"]
            tags.save()
    with Library.open(tmp_path / "lib", separator=Separator.tiny(), encoders=EncoderPair.tiny()) as lib:
        lib.add_paths([music])
        lib.scan(mode="fast", analyze=False, workers=1)
        assert len(lib.songs()) == 8
    return tmp_path / "lib"


def test_train_from_the_library_on_the_command_line(tmp_path: Path, toy: Path) -> None:
    library = _tagged_library(tmp_path, toy)
    out = tmp_path / "run"
    args = [sys.executable, "-m", "cli", "train", "--from-library", "--library", str(library),
            "--out", str(out), "--vocals", "separated", "--separator", "tiny", "--width", "0.0625",
            "--batches-per-epoch", "2", "--epochs", "1", "--batch-size", "4", "--negatives", "2",
            "--segments-per-song", "2", "--val-fraction", "0", "--test-fraction", "0", "--val-batches", "1",
            "--cache", str(tmp_path / "cache"), "--device", "cpu", "--threads", "1", "--no-eval",
            "--json-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(args, cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    events = [parse_event(line) for line in res.stdout.splitlines()]  # every line is a typed event
    split = next(e for e in events if isinstance(e, SplitEvent))
    assert (split.singers, split.songs) == (4, 8)
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.stopped == "max_epochs" and done.best_checkpoint
    assert Path(done.best_checkpoint).is_file()
    # the songs are the library's, labelled by their artist tags, listed in the run folder
    manifest = out / "data" / "manifest.csv"
    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["singer"] for r in rows} == {f"Singer {i:02d}" for i in range(4)}
    assert all(r["path"].startswith(str(tmp_path / "music")) for r in rows)
    # resuming keeps the songs the run started with
    stamp = manifest.stat().st_mtime_ns
    res = subprocess.run([*args, "--resume"], cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    assert manifest.stat().st_mtime_ns == stamp
    # a folder that is no library is named as such
    assert args[6] == str(library) and args[8] == str(out)
    res = subprocess.run([*args[:6], str(tmp_path / "nolib"), args[7], str(tmp_path / "run2"), *args[9:]],
                         cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 1 and "there is no library here" in res.stderr
    assert isinstance(parse_event(res.stdout.splitlines()[-1]), ErrorEvent)


# --- layering -----------------------------------------------------------------------------------


def _imports_of(path: Path, package: str) -> set[str]:
    """Modules of ``package`` that ``path`` imports, at any depth (function bodies too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith(package + ".")}
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == package:
                found |= {f"{package}.{a.name}" for a in node.names}
            elif node.module.startswith(package + "."):
                found.add(node.module)
    return found


def test_no_import_loop_inside_training() -> None:
    graph = {f"training.{p.stem}": _imports_of(p, "training") for p in (REPO / "training").glob("*.py")}
    assert "training.trainer" not in graph["training.evaluate"]

    def cycle_from(start: str, node: str, seen: tuple[str, ...]) -> tuple[str, ...] | None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                return (*seen, nxt)
            if nxt not in seen:
                found = cycle_from(start, nxt, (*seen, nxt))
                if found:
                    return found
        return None

    loops = [c for m in graph if (c := cycle_from(m, m, (m,)))]
    assert not loops, loops
