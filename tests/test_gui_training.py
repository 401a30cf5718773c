"""Retrain tab: a tiny ``crossmix train`` subprocess runs to the end, its JSON lines drive the
loss plot, and the evaluation table shows the new model beside the current one."""

from __future__ import annotations

import json

import pytest

from core.encoders import EncoderPair
from core.library import Library
from core.separation import Separator, StemCache
from gui.engine import Session
from gui.settings import Settings
from gui.training_panel import TrainingPanel, rows_from_source
from gui.workers import TaskRunner
from training.toy import make_toy_corpus

pytestmark = [pytest.mark.gui, pytest.mark.slow]


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
    args = panel.train_arguments(panel.out_dir / "data")
    assert args[args.index("--lambdas") + 1] == "0.25,0.25,0.25,0.25"

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
