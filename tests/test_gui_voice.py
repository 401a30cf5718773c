"""A voice as the query in the real window, offscreen (issue 15): the voice-alone toggle,
a typed and a tapped tempo (T) driving the cross-mix, the bar and fine offsets heard live,
and a region dragged across the query's waveform searched on its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication
from synth_songs import make_song

from core.embedding.encoders import EncoderPair
from core.library.library import Library
from core.separation.separator import Separator, StemCache
from gui.engine import Session
from gui.main_window import MainWindow
from gui.playback import Player
from gui.settings import Settings

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

WAIT = 120_000


@pytest.fixture(autouse=True, scope="module")
def _engine_imported():
    from gui.engine import warm_up

    warm_up()


class CountingSeparator(Separator):
    calls = 0

    def separate(self, audio: Any, **kw: Any) -> Any:  # type: ignore[override]
        type(self).calls += 1
        return super().separate(audio, **kw)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A library of three generated mixes (tiny encoders), a 10-s song and its vocal alone."""
    root = tmp_path_factory.mktemp("gui-voice")
    (root / "songs").mkdir()
    for i, tempo in enumerate((96.0, 120.0, 108.0)):
        s = make_song(tempo=tempo, key_root=2 * i, seconds=8.0, seed=60 + i)
        sf.write(root / "songs" / f"song{i}.flac", s.mix.samples.T, s.mix.sr)
    with Library.open(root / "lib", separator=Separator.tiny(), encoders=EncoderPair.tiny()) as lib:
        lib.add_paths([root / "songs"])
        assert lib.scan(mode="fast").indexed == 3
    q = make_song(tempo=100.0, key_root=9, key_mode="minor", seconds=10.0, seed=70,
                  first_beat=0.45)
    sf.write(root / "song.flac", q.mix.samples.T, q.mix.sr)
    sf.write(root / "voice.wav", q.vocals.samples.T, q.vocals.sr)
    return {"lib": root / "lib", "song": root / "song.flac", "voice": root / "voice.wav"}


@pytest.fixture
def window(qtbot, tmp_path, files):
    base = Separator.tiny(seed=0)
    sep = CountingSeparator(base._nets, model_id=base.model_id, name=base.name)
    CountingSeparator.calls = 0
    session = Session(separator_factory=lambda d: sep, encoders_factory=lambda d: EncoderPair.tiny(),
                      library_factory=lambda: Library.open(files["lib"]),
                      stem_cache=StemCache(tmp_path / "stems"), duplicate_threshold=1.5)
    w = MainWindow(settings=Settings(tmp_path / "settings.ini"), session=session)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


def query(qtbot, w: MainWindow, path: Path, **opts: Any) -> Any:
    """Query ``path`` and wait for its results, analysis and first preview."""
    with qtbot.waitSignal(w.search_page.query_finished, timeout=WAIT) as sig:
        w.search_page.query_file(path, **opts)
    assert sig.args[0] is not None, w.errors
    with qtbot.waitSignals([w.search_page.analysis_finished, w.search_page.preview_finished],
                           timeout=WAIT):
        pass
    assert w.search_page.preview is not None, w.errors
    return sig.args[0]


def test_the_voice_alone_toggle_runs_the_query_again_without_separating(qtbot, window, files):
    w = window
    voice = w.search_page.query_panel.voice
    r = query(qtbot, w, files["voice"])
    # the tiny random separator leaves half of anything in the accompaniment: "a mix"
    assert not r.vocal_only and r.vocal_check is not None
    assert not voice.vocal_only.isChecked() and "a mix" in voice.vocal_note.text()
    assert w.search_page.query_panel.vocal_wave.getPlotItem().titleLabel.text == "Separated vocal"
    assert w.search_page.query_panel.mix_wave.getPlotItem().titleLabel.text.startswith("Mix")
    assert voice.region_label.text() == "Drag across the mix to choose a part."
    separations = CountingSeparator.calls
    with qtbot.waitSignal(w.search_page.query_finished, timeout=WAIT) as sig:
        qtbot.mouseClick(voice.vocal_only, Qt.MouseButton.LeftButton)
        # while it runs, the waveforms are already titled for a voice alone, not the last query's
        assert w.search_page.querying
        assert w.search_page.query_panel.mix_wave.getPlotItem().titleLabel.text.startswith("Voice alone")
        assert "file itself" in w.search_page.query_panel.vocal_wave.getPlotItem().titleLabel.text
    r2 = sig.args[0]
    assert r2 is not None and r2.vocal_only and r2.vocal_check is None, w.errors
    assert CountingSeparator.calls == separations  # nothing separated, not even a probe
    assert voice.vocal_only.isChecked() and "not separated" in voice.vocal_note.text()
    assert "file itself" in w.search_page.query_panel.vocal_wave.getPlotItem().titleLabel.text
    assert w.search_page.query_panel.mix_wave.getPlotItem().titleLabel.text.startswith("Voice alone")
    assert voice.region_label.text() == "Drag across the voice to choose a part."
    np.testing.assert_array_equal(r2.stems.vocals.samples, r2.stems.mix.samples)
    with qtbot.waitSignals([w.search_page.analysis_finished, w.search_page.preview_finished],
                           timeout=WAIT):
        pass
    # the stage row does not tick a separation that did not happen, even once analysed
    stages = w.search_page.query_panel.stages
    assert stages.labels["separate"].text() == "– Not separated"
    assert stages.labels["embed"].text() == "✓ Embed" and stages.labels["analyze"].text() == "✓ Analyse"
    # a voice's tempo is estimated from its onsets, with a confidence shown
    assert r2.tempo_source == "onsets"
    assert "onsets, confidence" in voice.tempo_note.text()
    assert voice.tempo.value() == pytest.approx(100.0, abs=2.0)


def test_typed_and_tapped_tempo_and_live_offsets(qtbot, window, files):
    w = window
    voice = w.search_page.query_panel.voice
    query(qtbot, w, files["voice"], vocal_only=True)
    # typed: the query goes on an 80 BPM grid and the preview is rendered again on it
    with qtbot.waitSignals([w.search_page.analysis_finished, w.search_page.preview_finished],
                           timeout=WAIT):
        voice.tempo.lineEdit().selectAll()
        qtbot.keyClicks(voice.tempo.lineEdit(), "80")
        qtbot.keyClick(voice.tempo.lineEdit(), Qt.Key.Key_Return)
    r = w.search_page.result
    assert r.tempo_source == "typed" and r.analysis.tempo == pytest.approx(80.0)
    assert np.allclose(np.diff(r.analysis.beats), 0.75)
    assert w.search_page.preview.crossmix.report.query_tempo == pytest.approx(80.0)
    assert "80.0 BPM, typed" in voice.tempo_note.text()
    # the T key taps
    w.activateWindow()
    w.search_page.table.setFocus()
    qtbot.keyClick(w.search_page.table, Qt.Key.Key_T)
    assert len(voice._taps) == 1
    # tapped: four taps half a second apart are 120 BPM, applied when the taps stop
    with qtbot.waitSignals([w.search_page.analysis_finished, w.search_page.preview_finished],
                           timeout=WAIT):
        for t in (10.0, 10.5, 11.0, 11.5):
            voice.tap(at=t)
    assert r.tempo_source == "tapped" and r.analysis.tempo == pytest.approx(120.0)
    assert w.search_page.preview.crossmix.report.query_tempo == pytest.approx(120.0)
    # the offsets move the accompaniment layer at once, and the export renders them
    phase = w.search_page.preview_panel.phase
    phase.bar_offset.setValue(1)
    phase.fine.setValue(50)
    sr = w.player._sources["crossmix"].sr
    assert w.player._sources["crossmix"].offsets == (0, round((0.5 + 0.05) * sr))
    opts = w.search_page.remix_options()
    assert (opts.bar_offset_beats, opts.offset_ms) == (1, 50.0)
    # the preview is not rendered again
    assert w.search_page._render_options().bar_offset_beats == 0
    # back to the estimate
    with qtbot.waitSignals([w.search_page.analysis_finished, w.search_page.preview_finished],
                           timeout=WAIT):
        qtbot.mouseClick(voice.estimate_button, Qt.MouseButton.LeftButton)
    assert r.tempo_source == "onsets"


def test_player_offsets_move_a_layer(qapp):
    p = Player(device=None)
    voc = np.zeros((1000, 2), np.float32)
    acc = np.zeros((1000, 2), np.float32)
    acc[100] = 1.0
    p.set_source("crossmix", [voc, acc], 1000)
    out = np.zeros((1000, 2), np.float32)
    p.set_offsets("crossmix", [0.0, 0.05])  # 50 frames later
    p._mix_into(p._sources["crossmix"], 0, 1000, out)
    assert np.flatnonzero(out[:, 0]).tolist() == [150]
    p.set_offsets("crossmix", [0.0, -0.2])  # 200 frames earlier: gone from the start
    p._mix_into(p._sources["crossmix"], 0, 1000, out)
    assert not out.any()


def _drag(view, t0: float, t1: float) -> None:
    """A left-button drag across ``view`` from ``t0`` to ``t1`` seconds, as a mouse does it."""
    vb = view.getPlotItem().getViewBox()
    y = vb.sceneBoundingRect().center().y()

    def at(t: float) -> QPoint:
        scene = vb.mapViewToScene(QPointF(t, 0.0))
        return view.mapFromScene(QPointF(scene.x(), y))

    vp = view.viewport()
    a, b = at(t0), at(t1)

    def send(kind: QEvent.Type, pos: QPoint, buttons: Qt.MouseButton) -> None:
        ev = QMouseEvent(kind, QPointF(pos), QPointF(vp.mapToGlobal(pos)),
                         Qt.MouseButton.LeftButton, buttons, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(vp, ev)

    send(QEvent.Type.MouseButtonPress, a, Qt.MouseButton.LeftButton)
    for f in np.linspace(0.1, 1.0, 8):
        send(QEvent.Type.MouseMove, QPoint(int(a.x() + f * (b.x() - a.x())), a.y()),
             Qt.MouseButton.LeftButton)
    send(QEvent.Type.MouseButtonRelease, b, Qt.MouseButton.NoButton)


def test_a_region_dragged_across_the_mix_is_searched_and_previewed(qtbot, window, files):
    w = window
    voice = w.search_page.query_panel.voice
    r = query(qtbot, w, files["song"])
    whole = r.embedding
    assert not voice.search_region_button.isEnabled()
    with qtbot.waitSignal(w.search_page.query_panel.mix_wave.region_changed, timeout=5000):
        _drag(w.search_page.query_panel.mix_wave, 2.0, 7.0)
    sel = voice.selection
    assert sel is not None and abs(sel[0] - 2.0) < 0.3 and abs(sel[1] - 7.0) < 0.3, sel
    assert voice.search_region_button.isEnabled()
    with qtbot.waitSignals([w.search_page.search_finished, w.search_page.analysis_finished,
                            w.search_page.preview_finished], timeout=WAIT):
        qtbot.mouseClick(voice.search_region_button, Qt.MouseButton.LeftButton)
    assert r.region == sel and w.search_page.results_model.rowCount() == 3
    assert not np.allclose(r.embedding.V, whole.V, atol=1e-4)  # only the region embedded
    assert "Searching with" in voice.region_label.text()
    # the cross-mix preview starts at the region
    assert w.search_page.preview.crossmix.start_s == pytest.approx(sel[0], abs=0.01)
    assert w.search_page.preview.crossmix.mix.duration == pytest.approx(sel[1] - sel[0], abs=0.01)
    # the whole song again
    with qtbot.waitSignals([w.search_page.search_finished, w.search_page.preview_finished],
                           timeout=WAIT):
        qtbot.mouseClick(voice.whole_song_button, Qt.MouseButton.LeftButton)
    assert r.region is None and r.embedding is whole
    assert w.search_page.preview.crossmix.start_s == 0.0  # the 10-s song fits one preview
    assert w.search_page.preview.crossmix.mix.duration == pytest.approx(10.0, abs=0.01)
    # a part too short is refused with a message, and the results stay
    w.search_page.query_panel.mix_wave.set_region((1.0, 2.0))
    voice.search_region_button.click()
    qtbot.waitUntil(lambda: any("at least 3 s" in e for e in w.errors), timeout=WAIT)
    assert w.search_page.results_model.rowCount() == 3

