"""Retrain tab: a tiny ``crossmix train --config`` subprocess runs to the end, its typed events
drive the loss plot, and the evaluation table shows the new model beside the current one; Stop,
Resume, the Runs list, the remembered form and the options of ``crossmix train`` (InfoNCE,
label-agnostic pairs, artificial mixtures, GE2E heads, teacher)."""

from __future__ import annotations

import json

import pytest

from core.embedding.encoders import EncoderPair
from core.library.library import Library
from core.separation.separator import Separator, StemCache
from gui.engine import Session
from gui.settings import Settings
from gui.training_form import TrainingForm, form_advice
from gui.training_panel import TrainingPanel
from gui.training_run import CONFIG_FILE, list_runs, train_command
from gui.workers import TaskRunner
from training.events import BatchEvent, DoneEvent, EpochEvent, ResumeEvent
from training.toy import make_toy_corpus
from training.trainer import TrainConfig

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
    form = panel.form
    form.folder.setText(str(toy))
    assert form.src_folder.isChecked()
    form.loss.setCurrentIndex(form.loss.findText("CROSS"))
    assert [sp.value() for sp in form.lambdas] == [1.0, 0.0, 0.0, 0.0]
    form.loss.setCurrentIndex(form.loss.findText("CROSS-SP"))
    form.batches.setValue(3)
    form.epochs.setValue(2)
    form.patience.setValue(5)
    form.device.setCurrentIndex(form.device.findData("cpu"))
    form.width_mult.setValue(0.125)
    form.batch_size.setValue(4)
    form.vocals.setCurrentIndex(form.vocals.findData("stems"))
    form.held_out.setValue(0.25)

    with qtbot.waitSignal(panel.run_finished, timeout=300_000) as sig:
        panel.start()
        qtbot.waitUntil(lambda: panel.run.process is not None, timeout=30_000)
        assert panel.stop_button.isEnabled() and not panel.start_button.isEnabled()
        # the app runs 'crossmix train --config FILE', the file being the run's TrainConfig
        args = panel.run.process.arguments()
        config_file = panel.run.out_dir / CONFIG_FILE
        assert args[:5] == ["-m", "cli", "train", "--config", str(config_file)]
        assert "--json-progress" in args and "--data" not in args and "--width" not in args
        assert TrainConfig.load(config_file) == panel.run.config
    done = sig.args[0]
    assert done is not None, panel.status.text()
    assert isinstance(done, DoneEvent) and done.stopped == "max_epochs"
    kinds = [type(e) for e in panel.run.events]
    assert kinds.count(EpochEvent) == 2 and BatchEvent in kinds and kinds[-1] is DoneEvent
    # the loss plot: one point per epoch for train and validation, batch points too
    xs, ys = panel.train_curve.getData()
    assert list(xs) == [1.0, 2.0] and all(y > 0 for y in ys)
    assert len(panel.val_curve.getData()[0]) == 2
    assert len(panel.batch_curve.getData()[0]) >= 2
    assert panel.use_button.isEnabled()
    assert not panel.resume_button.isEnabled()  # a finished run has nothing to resume
    assert panel.run.config.lambdas is None and panel.run.config.loss == "cross-sp"
    assert panel.run.config.width == 0.125 and panel.run.config.data == str(panel.run.out_dir / "data")
    # the run is listed, finished, with its settings
    assert [r.path for r in panel.runs] == [panel.run.out_dir]
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
    split = json.loads((panel.run.out_dir / "split.json").read_text())
    assert panel.current_report["n_singers"] == len(split["test"]) == panel.new_report["n_singers"]

    with qtbot.waitSignal(panel.model_chosen) as chosen:
        panel.use_button.click()
    assert chosen.args == [done.best_checkpoint]
    EncoderPair.load(done.best_checkpoint)  # a loadable checkpoint


def test_training_errors_are_readable(qtbot, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    panel = _panel(tmp_path, Settings(tmp_path / "s.ini"))
    qtbot.addWidget(panel)
    panel.form.folder.setText(str(empty))
    with qtbot.waitSignal(panel.run_finished, timeout=30_000) as sig:
        panel.start()
    assert sig.args[0] is None
    assert "no labelled songs" in panel.status.text()
    assert panel.start_button.isEnabled()
    # the library as source: its songs have no artist tags here
    panel.form.src_library.setChecked(True)
    with qtbot.waitSignal(panel.run_finished, timeout=30_000):
        panel.start()
    assert "artist tag" in panel.status.text()


def _small_run(panel, toy, *, epochs: int) -> None:
    form = panel.form
    form.folder.setText(str(toy))
    form.batches.setValue(4)
    form.epochs.setValue(epochs)
    form.patience.setValue(epochs)
    form.device.setCurrentIndex(form.device.findData("cpu"))
    form.width_mult.setValue(0.125)
    form.batch_size.setValue(4)
    form.vocals.setCurrentIndex(form.vocals.findData("stems"))
    form.held_out.setValue(0.25)


def test_stop_then_resume_use_and_list_the_run(qtbot, tmp_path, toy):
    settings = Settings(tmp_path / "s.ini")
    panel = _panel(tmp_path, settings)
    qtbot.addWidget(panel)
    _small_run(panel, toy, epochs=200)
    epochs_seen = lambda: [e for e in panel.run.events if isinstance(e, EpochEvent)]  # noqa: E731
    with qtbot.waitSignal(panel.run_finished, timeout=300_000) as sig:
        panel.start()
        qtbot.waitUntil(lambda: len(epochs_seen()) >= 1, timeout=240_000)
        assert panel.eta.text().endswith("left")
        panel.stop()
        assert panel.eta.text() == ""  # no ETA for a run that is ending
    assert sig.args[0] is None
    run = panel.run.out_dir
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
    panel.form.width_mult.setValue(0.5)
    with qtbot.waitSignal(panel.run_finished, timeout=300_000) as sig:
        panel.resume_button.click()
        assert not panel.resume_button.isEnabled() and panel.stop_button.isEnabled()
        assert panel.run.process.arguments()[-2:] == ["--resume", "--json-progress"]
        qtbot.waitUntil(lambda: len(epochs_seen()) >= 1, timeout=240_000)
        panel.stop()
    assert sig.args[0] is None, panel.status.text()
    resumed = [e for e in panel.run.events if isinstance(e, ResumeEvent)]
    assert resumed and resumed[0].epoch >= first - 1
    assert epochs_seen()[0].epoch >= first  # it went on, it did not start again
    assert panel.run.config.width == 0.125

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


def _form(qtbot, settings):
    form = TrainingForm(settings)
    qtbot.addWidget(form)
    return form


def test_form_is_remembered_with_cpu_defaults(qtbot, tmp_path):
    path = tmp_path / "s.ini"
    form = _form(qtbot, Settings(path))
    # practical on a CPU, not the paper's GPU schedule
    assert form.batches.value() <= 200 and form.epochs.value() <= 50
    assert form.width_mult.value() <= 0.5
    form.loss.setCurrentIndex(form.loss.findData("infonce"))
    form.pairs.setCurrentIndex(form.pairs.findData("agnostic"))
    form.sampling.setCurrentIndex(form.sampling.findData("both"))
    form.arch.setCurrentIndex(form.arch.findData("ge2e"))
    form.head_hidden.setValue(128)
    form.teacher.setValue(0.5)
    form.temperature.setValue(0.07)
    form.batches.setValue(42)
    form.lambdas[0].setValue(1.0)
    form.folder.setText(str(tmp_path))
    form.held_out.setValue(0.0)

    again = _form(qtbot, Settings(path))
    cfg = again.config(data="d", out="o")
    assert (cfg.loss, cfg.pairs, cfg.sampling, cfg.arch) == ("infonce", "agnostic", "both", "ge2e")
    assert (cfg.head_hidden, cfg.teacher, cfg.temperature) == (128, 0.5, 0.07)
    assert cfg.batches_per_epoch == 42 and cfg.lambdas == (1.0, 0.25, 0.25, 0.25)
    assert cfg.val_fraction == cfg.test_fraction == 0.0
    assert again.src_folder.isChecked() and again.folder.text() == str(tmp_path)
    assert again.folder_source() == str(tmp_path)
    assert not cfg.uses_labels


def test_label_agnostic_pairs_only_with_infonce(qtbot, tmp_path):
    settings = Settings(tmp_path / "s.ini")
    form = _form(qtbot, settings)
    agnostic = form.pairs.findData("agnostic")
    assert "without artist tags" in form.pairs.itemText(agnostic)
    assert "InfoNCE" in form.form_note.text()
    for name in ("mixed", "cross", "cross-sp"):
        form.loss.setCurrentIndex(form.loss.findData(name))
        assert not form.pairs.isEnabled()
        assert not form.pairs.model().item(agnostic).isEnabled()
    form.loss.setCurrentIndex(form.loss.findData("infonce"))
    assert form.pairs.isEnabled() and form.pairs.model().item(agnostic).isEnabled()
    assert form.temperature.isEnabled() and not form.margin.isEnabled()
    form.pairs.setCurrentIndex(agnostic)
    assert form.config().pairs == "agnostic"
    # back to a triplet loss: the pairs follow, so the form never holds the invalid pair
    form.loss.setCurrentIndex(0)
    assert form.pairs.currentData() == "label" and form.config().pairs == "label"
    assert settings.get("train/pairs") == "label"
    # an invalid pair written by hand is not loaded as such either
    settings.set("train/loss", "cross")
    settings.set("train/pairs", "agnostic")
    again = _form(qtbot, settings)
    assert again.pairs.currentData() == "label" and again.config().pairs == "label"


def test_the_forms_config_file_runs_through_the_cli_unchanged(qtbot, tmp_path):
    """What the Retrain tab starts: its TrainConfig, saved, is what 'crossmix train --config'
    trains with (every field, none lost on the way)."""
    from cli import build_parser
    from cli.train import run_train, train_config

    form = _form(qtbot, Settings(tmp_path / "s.ini"))
    form.loss.setCurrentIndex(form.loss.findData("infonce"))
    form.pairs.setCurrentIndex(form.pairs.findData("agnostic"))
    form.sampling.setCurrentIndex(form.sampling.findData("artificial"))
    form.arch.setCurrentIndex(form.arch.findData("ge2e"))
    form.head_hidden.setValue(64)
    form.teacher.setValue(0.3)
    form.temperature.setValue(0.2)
    form.lambdas[2].setValue(0.0)
    cfg = form.config(data=tmp_path / "d", out=tmp_path / "o")
    file = cfg.save(tmp_path / "o" / CONFIG_FILE)
    args = train_command(file, threads=1, resume=True)
    assert args[:3] == ["-m", "cli", "train"]
    ns = build_parser("train").parse_args(args[2:])
    assert ns.func is run_train and ns.resume and ns.json_progress and ns.threads == 1
    assert train_config(ns) == cfg
    assert cfg.lambdas == (0.25, 0.25, 0.0, 0.25) and cfg.head_hidden == 64


def test_advice_names_the_form_not_the_command_line():
    msg = ("x: 8 singers are too few for 2 validation and 2 test singers plus training "
           "singers; add singers or lower --val-fraction / --test-fraction.")
    out = form_advice(msg)
    assert "--" not in out and "Held-out singers" in out and "0 holds none out" in out
    assert "--" not in form_advice("no labelled songs found (for a folder without artist tags "
                                   "use --pairs agnostic)")
