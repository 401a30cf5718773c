"""Retrain tab: a tiny ``crossmix train`` subprocess runs to the end, its JSON lines drive the
loss plot, and the evaluation table shows the new model beside the current one; Stop, Resume,
the Runs list, the remembered form and the options of ``crossmix train`` (InfoNCE, label-agnostic
pairs, artificial mixtures, GE2E heads, teacher)."""

from __future__ import annotations

import json

import pytest

from core.embedding.encoders import EncoderPair
from core.library.library import Library
from core.separation.separator import Separator, StemCache
from gui.engine import Session
from gui.settings import Settings
from gui.training_panel import (
    TrainingPanel,
    form_advice,
    list_runs,
    rows_from_library,
    rows_from_source,
    train_arguments,
)
from gui.workers import TaskRunner
from training.toy import make_toy_corpus

pytestmark = [pytest.mark.gui, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _own_models_folder(tmp_path, monkeypatch):
    """Each test's runs go to its own models folder (the Runs list reads it)."""
    monkeypatch.setenv("CROSSMIX_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_corpus(tmp_path_factory.mktemp("toy"), singers=8, songs=2, seconds=6.0)


def _panel(tmp_path, settings):
    session = Session(separator_factory=lambda d: Separator.tiny(device=d),
                      encoders_factory=lambda d: EncoderPair.tiny(),
                      library_factory=lambda: Library.open(tmp_path / "lib"),
                      stem_cache=StemCache(tmp_path / "stems"))
    return TrainingPanel(session, settings, TaskRunner())


def test_retraining_runs_to_the_end_and_compares_with_the_current_model(qtbot, tmp_path, toy):
    current = EncoderPair.tiny(seed=3).save(tmp_path / "current" / "enc.safetensors")
    settings = Settings(tmp_path / "s.ini")
    settings.set("model/encoder_checkpoint", str(current))
    panel = _panel(tmp_path, settings)
    qtbot.addWidget(panel)
    panel.folder.setText(str(toy))
    assert panel.src_folder.isChecked()
    panel.loss.setCurrentIndex(panel.loss.findText("CROSS"))
    assert [sp.value() for sp in panel.lambdas] == [1.0, 0.0, 0.0, 0.0]
    panel.loss.setCurrentIndex(panel.loss.findText("CROSS-SP"))
    panel.batches.setValue(3)
    panel.epochs.setValue(2)
    panel.patience.setValue(5)
    panel.device.setCurrentIndex(panel.device.findData("cpu"))
    panel.width_mult.setValue(0.125)
    panel.batch_size.setValue(4)
    panel.vocals.setCurrentIndex(panel.vocals.findData("stems"))
    panel.held_out.setValue(0.25)

    with qtbot.waitSignal(panel.run_finished, timeout=300_000) as sig:
        panel.start()
        qtbot.waitUntil(lambda: panel.process is not None, timeout=30_000)
        assert panel.stop_button.isEnabled() and not panel.start_button.isEnabled()
    done = sig.args[0]
    assert done is not None, panel.status.text()
    assert done["stopped"] == "max_epochs"
    kinds = [e["event"] for e in panel.events]
    assert kinds.count("epoch") == 2 and "batch" in kinds and kinds[-1] == "done"
    # the loss plot: one point per epoch for train and validation, batch points too
    xs, ys = panel.train_curve.getData()
    assert list(xs) == [1.0, 2.0] and all(y > 0 for y in ys)
    assert len(panel.val_curve.getData()[0]) == 2
    assert len(panel.batch_curve.getData()[0]) >= 2
    assert panel.use_button.isEnabled()
    assert not panel.resume_button.isEnabled()  # a finished run has nothing to resume
    assert panel.run_config.lambdas is None and panel.run_config.loss == "cross-sp"
    args = train_arguments(panel.run_config)
    assert "--lambdas" not in args and args[args.index("--width") + 1] == "0.125"
    # the run is listed, finished, with its settings
    assert [r.path for r in panel.runs] == [panel.out_dir]
    assert panel.runs[0].status == "finished" and not panel.runs[0].resumable
    assert panel.runs_table.item(0, 1).text().startswith("cross-sp")

    # the evaluation table: the new model now, the current one once it is evaluated
    with qtbot.waitSignal(panel.comparison_finished, timeout=300_000):
        pass
    assert panel.new_report is not None and panel.current_report is not None, \
        panel.table_note.text()
    assert panel.table.rowCount() > 5
    row = next(i for i in range(panel.table.rowCount())
               if panel.table.item(i, 0).text().startswith("Query-by-singer mAP"))
    assert float(panel.table.item(row, 1).text()) >= 0
    assert float(panel.table.item(row, 2).text()) >= 0
    # both were evaluated on the same singers: the run's test split
    split = json.loads((panel.out_dir / "split.json").read_text())
    assert panel.current_report["n_singers"] == len(split["test"]) == panel.new_report["n_singers"]

    with qtbot.waitSignal(panel.model_chosen) as chosen:
        panel.use_button.click()
    assert chosen.args == [done["best_checkpoint"]]
    EncoderPair.load(done["best_checkpoint"])  # a loadable checkpoint


def test_training_errors_are_readable(qtbot, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    panel = _panel(tmp_path, Settings(tmp_path / "s.ini"))
    qtbot.addWidget(panel)
    panel.folder.setText(str(empty))
    with qtbot.waitSignal(panel.run_finished, timeout=30_000) as sig:
        panel.start()
    assert sig.args[0] is None
    assert "no labelled songs" in panel.status.text()
    assert panel.start_button.isEnabled()
    # the library as source: its songs have no artist tags here
    panel.src_library.setChecked(True)
    with qtbot.waitSignal(panel.run_finished, timeout=30_000):
        panel.start()
    assert "artist tag" in panel.status.text()


def test_manifest_file_under_another_name_is_resolved(tmp_path, toy):
    import csv
    import os

    lists = tmp_path / "lists"
    lists.mkdir()
    with open(toy / "manifest.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    cols = rows[0]
    with open(lists / "my list.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in rows[1:]:  # relative to the list's own folder, as in a folder's manifest.csv
            w.writerow([os.path.relpath(toy / v, lists) if c in ("path", "vocals") and v else v
                        for c, v in zip(cols, r, strict=True)])
    got = rows_from_source(lists / "my list.csv")
    assert len(got) == 16 and {r[1] for r in got} == {f"Singer {i:02d}" for i in range(8)}
    assert all(os.path.isfile(r[0]) and os.path.isfile(r[3]) for r in got)


def _small_run(panel, toy, *, epochs: int) -> None:
    panel.folder.setText(str(toy))
    panel.batches.setValue(4)
    panel.epochs.setValue(epochs)
    panel.patience.setValue(epochs)
    panel.device.setCurrentIndex(panel.device.findData("cpu"))
    panel.width_mult.setValue(0.125)
    panel.batch_size.setValue(4)
    panel.vocals.setCurrentIndex(panel.vocals.findData("stems"))
    panel.held_out.setValue(0.25)


def test_stop_then_resume_use_and_list_the_run(qtbot, tmp_path, toy):
    settings = Settings(tmp_path / "s.ini")
    panel = _panel(tmp_path, settings)
    qtbot.addWidget(panel)
    _small_run(panel, toy, epochs=200)
    epochs_seen = lambda: [e for e in panel.events if e.get("event") == "epoch"]  # noqa: E731
    with qtbot.waitSignal(panel.run_finished, timeout=300_000) as sig:
        panel.start()
        qtbot.waitUntil(lambda: len(epochs_seen()) >= 1, timeout=240_000)
        assert panel.eta.text().endswith("left")
        panel.stop()
        assert panel.eta.text() == ""  # no ETA for a run that is ending
    assert sig.args[0] is None
    run = panel.out_dir
    assert (run / "best.safetensors").is_file()
    # Stop offers Resume (no command line) and the best model so far
    assert "Resume" in panel.status.text() and "--resume" not in panel.status.text()
    assert panel.resume_button.isEnabled() and panel.use_button.isEnabled()
    assert panel.start_button.isEnabled() and panel.eta.text() == ""
    qtbot.wait(300)
    assert panel.eta.text() == "" and panel.bar.format() == "Stopped"
    assert [r.path for r in panel.runs] == [run] and panel.runs[0].resumable
    assert "stopped" in panel.runs_table.item(0, 2).text()
    first = len(epochs_seen())

    # the form changes, the resumed run keeps its own settings (a different width would not load)
    panel.width_mult.setValue(0.5)
    with qtbot.waitSignal(panel.run_finished, timeout=300_000) as sig:
        panel.resume_button.click()
        assert not panel.resume_button.isEnabled() and panel.stop_button.isEnabled()
        qtbot.waitUntil(lambda: len(epochs_seen()) >= 1, timeout=240_000)
        panel.stop()
    assert sig.args[0] is None, panel.status.text()
    resumed = [e for e in panel.events if e.get("event") == "resume"]
    assert resumed and resumed[0]["epoch"] >= first - 1
    assert epochs_seen()[0]["epoch"] >= first  # it went on, it did not start again
    assert panel.run_config.width == 0.125

    # the Runs list resumes and chooses too
    panel.runs_table.selectRow(0)
    assert panel.run_resume_button.isEnabled() and panel.run_use_button.isEnabled()
    with qtbot.waitSignal(panel.model_chosen) as chosen:
        panel.run_use_button.click()
    assert chosen.args == [str(run / "best.safetensors")]


def test_runs_started_on_the_command_line_are_listed(qtbot, tmp_path):
    from core.paths import models_dir

    run = models_dir() / "cli-run"
    EncoderPair.tiny().save(run / "best.safetensors")
    (run / "evaluation.json").write_text("{}")
    (models_dir() / "not-a-run").mkdir()
    runs = list_runs()
    assert [r.path.name for r in runs] == ["cli-run"]
    assert runs[0].status == "finished" and runs[0].best_checkpoint == run / "best.safetensors"
    panel = _panel(tmp_path, Settings(tmp_path / "s.ini"))
    qtbot.addWidget(panel)
    assert panel.runs_table.rowCount() == 1
    assert not panel.run_use_button.isEnabled()
    panel.runs_table.selectRow(0)
    assert panel.run_use_button.isEnabled() and not panel.run_resume_button.isEnabled()


def test_form_is_remembered_with_cpu_defaults(qtbot, tmp_path):
    path = tmp_path / "s.ini"
    panel = _panel(tmp_path, Settings(path))
    qtbot.addWidget(panel)
    # practical on a CPU, not the paper's GPU schedule
    assert panel.batches.value() <= 200 and panel.epochs.value() <= 50
    assert panel.width_mult.value() <= 0.5
    panel.loss.setCurrentIndex(panel.loss.findData("infonce"))
    panel.pairs.setCurrentIndex(panel.pairs.findData("agnostic"))
    panel.sampling.setCurrentIndex(panel.sampling.findData("both"))
    panel.arch.setCurrentIndex(panel.arch.findData("ge2e"))
    panel.head_hidden.setValue(128)
    panel.teacher.setValue(0.5)
    panel.temperature.setValue(0.07)
    panel.batches.setValue(42)
    panel.lambdas[0].setValue(1.0)
    panel.folder.setText(str(tmp_path))
    panel.held_out.setValue(0.0)

    again = _panel(tmp_path, Settings(path))
    qtbot.addWidget(again)
    cfg = again.config(data="d", out="o")
    assert (cfg.loss, cfg.pairs, cfg.sampling, cfg.arch) == ("infonce", "agnostic", "both", "ge2e")
    assert (cfg.head_hidden, cfg.teacher, cfg.temperature) == (128, 0.5, 0.07)
    assert cfg.batches_per_epoch == 42 and cfg.lambdas == (1.0, 0.25, 0.25, 0.25)
    assert cfg.val_fraction == cfg.test_fraction == 0.0
    assert again.src_folder.isChecked() and again.folder.text() == str(tmp_path)
    assert not cfg.uses_labels


def test_label_agnostic_pairs_only_with_infonce(qtbot, tmp_path):
    settings = Settings(tmp_path / "s.ini")
    panel = _panel(tmp_path, settings)
    qtbot.addWidget(panel)
    agnostic = panel.pairs.findData("agnostic")
    assert "without artist tags" in panel.pairs.itemText(agnostic)
    assert "InfoNCE" in panel.form_note.text()
    for name in ("mixed", "cross", "cross-sp"):
        panel.loss.setCurrentIndex(panel.loss.findData(name))
        assert not panel.pairs.isEnabled()
        assert not panel.pairs.model().item(agnostic).isEnabled()
    panel.loss.setCurrentIndex(panel.loss.findData("infonce"))
    assert panel.pairs.isEnabled() and panel.pairs.model().item(agnostic).isEnabled()
    assert panel.temperature.isEnabled() and not panel.margin.isEnabled()
    panel.pairs.setCurrentIndex(agnostic)
    assert panel.config().pairs == "agnostic"
    # back to a triplet loss: the pairs follow, so the form never holds the invalid pair
    panel.loss.setCurrentIndex(0)
    assert panel.pairs.currentData() == "label" and panel.config().pairs == "label"
    assert settings.get("train/pairs") == "label"
    # an invalid pair written by hand is not loaded as such either
    settings.set("train/loss", "cross")
    settings.set("train/pairs", "agnostic")
    again = _panel(tmp_path, settings)
    qtbot.addWidget(again)
    assert again.pairs.currentData() == "label" and again.config().pairs == "label"


def test_train_arguments_round_trip_through_the_cli(qtbot, tmp_path):
    import argparse

    import cli.train as tcli

    panel = _panel(tmp_path, Settings(tmp_path / "s.ini"))
    qtbot.addWidget(panel)
    panel.loss.setCurrentIndex(panel.loss.findData("infonce"))
    panel.pairs.setCurrentIndex(panel.pairs.findData("agnostic"))
    panel.sampling.setCurrentIndex(panel.sampling.findData("artificial"))
    panel.arch.setCurrentIndex(panel.arch.findData("ge2e"))
    panel.head_hidden.setValue(64)
    panel.teacher.setValue(0.3)
    panel.temperature.setValue(0.2)
    panel.lambdas[2].setValue(0.0)
    cfg = panel.config(data=tmp_path / "d", out=tmp_path / "o")
    parser = argparse.ArgumentParser()
    tcli.register(parser.add_subparsers())
    ns = parser.parse_args(train_arguments(cfg, threads=1, resume=True))
    assert ns.func is tcli.run_train and ns.resume and ns.json_progress and ns.threads == 1
    assert (ns.loss, ns.pairs, ns.sampling, ns.arch) == ("infonce", "agnostic", "artificial", "ge2e")
    assert (ns.head_hidden, ns.teacher, ns.temperature) == (64, 0.3, 0.2)
    assert ns.lambdas == (0.25, 0.25, 0.0, 0.25)
    assert (ns.epochs, ns.batches_per_epoch, ns.width) == (cfg.max_epochs, cfg.batches_per_epoch,
                                                         cfg.width)
    assert ns.data == str(tmp_path / "d") and not hasattr(ns, "no_eval")  # --no-eval not given (options given override --config)


def test_advice_names_the_form_not_the_command_line():
    msg = ("x: 8 singers are too few for 2 validation and 2 test singers plus training "
           "singers; add singers or lower --val-fraction / --test-fraction.")
    out = form_advice(msg)
    assert "--" not in out and "Held-out singers" in out and "0 holds none out" in out
    assert "--" not in form_advice("no labelled songs found (for a folder without artist tags "
                                   "use --pairs agnostic)")


def test_label_agnostic_training_reads_an_untagged_library(tmp_path):
    class Song:
        def __init__(self, path, artist):
            self.path, self.artist, self.title = str(path), artist, None

    class Lib:
        root = tmp_path

        def songs(self):
            return [Song(tmp_path / "a.wav", None), Song(tmp_path / "b.wav", "Singer")]

    from core.errors import TrainingError

    rows = rows_from_library(Lib(), labels=False)
    assert [r[1] for r in rows] == [f"song:{tmp_path / 'a.wav'}", "Singer"]
    assert len(rows_from_library(Lib())) == 1
    Lib.songs = lambda self: [Song(tmp_path / "a.wav", None)]
    with pytest.raises(TrainingError, match="label-agnostic"):
        rows_from_library(Lib())
