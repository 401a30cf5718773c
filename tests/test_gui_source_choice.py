"""The preview panel's "remove / keep a sound like this one" on the real window (offscreen), with
the real engine, tiny random-weight models and a tiny random-weight query separator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_gui_window import _engine_imported, drop_files, query_song, tiny_library  # noqa: F401

from core.embedding.encoders import EncoderPair
from core.library.library import Library
from core.separation.by_example import QSepConfig, QuerySeparator
from core.separation.separator import Separator, StemCache
from gui.engine import Session
from gui.main_window import MainWindow
from gui.settings import Settings
from gui.stall import StallMonitor

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def _tiny_query_separator(_device: torch.device) -> QuerySeparator:
    torch.manual_seed(5)
    m = QuerySeparator(QSepConfig(width=4, z_dim=4, depth=3, query_channels=(4,) * 6, gru_hidden=8,
                                  segment_frames=16, query_frames=32, name="tiny")).eval()
    m.class_latents.normal_()
    return m


@pytest.fixture
def window(qtbot, tmp_path, tiny_library):  # noqa: F811
    session = Session(
        separator_factory=lambda d: Separator.tiny(device=d),
        encoders_factory=lambda _d: EncoderPair.tiny(),
        library_factory=lambda: Library.open(tiny_library),
        stem_cache=StemCache(tmp_path / "stems"),
        duplicate_threshold=1.5,  # tiny random encoders: every song would be a near-duplicate
        query_separator_factory=_tiny_query_separator,
    )
    w = MainWindow(settings=Settings(tmp_path / "settings.ini"), session=session)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


def test_remove_keep_cancel_undo_rerender_the_cross_mix(qtbot, window, query_song, tmp_path: Path) -> None:  # noqa: F811
    """Select a stretch of the match's accompaniment and remove it: the cross-mix is re-rendered
    over the accompaniment without it, before and after are shown, and the window stays usable
    meanwhile; Keep gives the complement; the export carries the choice; Cancel brings the
    previous choice back and Undo the accompaniment as it was."""
    w = window
    with qtbot.waitSignal(w.search_page.preview_finished, timeout=120_000) as sig:
        drop_files(w.search_page.drop_zone, [query_song])
    before = sig.args[0]
    assert before is not None and before.choice is None, w.errors
    bar = w.search_page.preview_panel.choice_bar
    assert not bar.remove_button.isEnabled()  # nothing selected yet
    bar.set_origin("accompaniment")
    bar.select(1.0, 3.0)
    assert bar.remove_button.isEnabled() and bar.keep_button.isEnabled()
    mon = StallMonitor(interval_ms=10)
    mon.start()
    with qtbot.waitSignal(w.search_page.preview_finished, timeout=120_000) as sig:
        bar.remove_button.click()
        assert bar.cancel_button.isEnabled()  # progress with Cancel while it renders
        w.search_page.preview_panel.vocal_gain.setValue(-30)  # the rest of the window stays usable
        assert w.search_page.preview_panel.vocal_gain_label.text() == "-3.0 dB"
    mon.stop()
    removed = sig.args[0]
    assert removed is not None, w.errors
    assert removed.choice.mode == "remove" and removed.choice.origin == "accompaniment"
    assert (removed.choice.start, removed.choice.end) == pytest.approx((1.0, 3.0))
    acc0 = before.match_stems.full_band_accompaniment.samples
    acc1 = removed.accompaniment.samples
    assert acc1.shape == acc0.shape and not np.allclose(acc1, acc0)
    n = min(removed.crossmix.mix.n, before.crossmix.mix.n)
    assert not np.allclose(removed.crossmix.mix.samples[:, :n], before.crossmix.mix.samples[:, :n])
    assert bar.before_wave.isVisible() and bar.before_wave.drawn_points > 0
    assert w.search_page.preview_panel.waves["crossmix"].drawn_points > 0
    assert mon.max_stall_ms < 2000, mon.max_stall_ms
    assert not bar.cancel_button.isVisible() and bar.undo_button.isEnabled()

    # keep only it: the complement of the removal (the two add up to the accompaniment)
    with qtbot.waitSignal(w.search_page.preview_finished, timeout=120_000) as sig:
        bar.keep_button.click()
    kept = sig.args[0]
    assert kept.choice.mode == "keep"
    assert np.allclose(kept.accompaniment.samples + acc1, acc0, atol=1e-4)
    assert w.search_page._source_choice(None) == kept.choice  # kept with the match

    # the export includes it: a full-song render goes over the chosen accompaniment
    out = w.session.export(w.search_page.result, kept.row, preview=kept, path=tmp_path / "x.wav",
                           fmt="wav", bitrate="192k", full=True,
                           options=w.search_page.remix_options(full=True))
    assert out.is_file()

    # Cancel while applying: the previous choice (keep) comes back
    with qtbot.waitSignal(w.search_page.preview_finished, timeout=120_000) as sig:
        bar.remove_button.click()
        bar.cancel_button.click()
    assert sig.args[0].choice == kept.choice

    # Undo: the accompaniment as it was
    with qtbot.waitSignal(w.search_page.preview_finished, timeout=120_000) as sig:
        bar.undo_button.click()
    assert sig.args[0].choice is None and not bar.before_wave.isVisible()
