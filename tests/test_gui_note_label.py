"""gui/note_label.py (the Search page's results note): a two-line note is cut at a word with
"…", never clipped, and whole in its tooltip."""

from __future__ import annotations

from gui.note_label import NoteLabel

LONG = ("Search space: vocal->mix measured best for CROSS-GE2E: singer-ID top-1 0.04 on 104 unseen "
        "singers, 416 songs (chance 0.01) (the vocal spaces need a library indexed in full mode).")


def test_a_note_too_long_for_its_lines_is_cut_at_a_word_and_whole_in_the_tooltip(qtbot) -> None:
    note = NoteLabel(lines=2)
    qtbot.addWidget(note)
    note.resize(300, note.height())
    note.show()
    note.setText(LONG)
    shown = note.shown_text()
    assert note.text() == LONG and note.toolTip() == LONG
    assert shown.endswith(" …") and LONG.startswith(shown[:-2]) and LONG[len(shown) - 2] == " "
    assert note._fits(shown) and not note._fits(LONG)
    # wide enough: the whole text, no tooltip; narrower again: cut again
    note.resize(3000, note.height())
    assert note.shown_text() == LONG and note.toolTip() == ""
    note.resize(300, note.height())
    assert note.shown_text() == shown
    note.setText("Short.")
    assert note.shown_text() == "Short." and note.toolTip() == ""
    # the height does not follow the text: a note never moves what is under it
    assert note.height() == note.fontMetrics().lineSpacing() * 2 + 4
