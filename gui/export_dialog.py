"""Export dialog: format, bitrate, preview or full song, destination; remembers the choices.
Also the progress window every export shows (:func:`export_progress_window`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressDialog,
    QPushButton,
    QRadioButton,
    QWidget,
)

from core.audio.export import export_file_name, safe_file_stem, stem_paths
from gui.settings import BITRATES, EXPORT_FORMATS, Settings

LOSSY = ("mp3", "ogg")


@dataclass(frozen=True)
class ExportChoice:
    path: Path
    format: str
    bitrate: str
    full: bool
    overwrite: bool = False
    stems: bool = False  # also <name>_vocals and <name>_accompaniment beside it

    def targets(self) -> list[Path]:
        """Every file the export writes."""
        return [self.path, *stem_paths(self.path)] if self.stems else [self.path]


def safe_filename(text: str) -> str:
    """``text`` with characters that are awkward in file names replaced (dots kept)."""
    return safe_file_stem(text)


class ExportDialog(QDialog):
    """Where and how to export; with ``batch`` (a number of matches) there is no file name:
    each file is named ``"<query> x <match>"`` as a single export is, numbered when taken."""

    def __init__(self, settings: Settings, *, suggested_name: str, batch: int | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.batch = batch
        self.setWindowTitle(f"Export {batch} cross-mixes" if batch else "Export cross-mix")
        self.settings = settings
        self.overwrite = False
        self.suggested_name = safe_filename(suggested_name)

        self.format = QComboBox()
        self.format.addItems(list(EXPORT_FORMATS))
        self.bitrate = QComboBox()
        self.bitrate.addItems(list(BITRATES))
        self.preview = QRadioButton("Preview (the rendered excerpt)")
        self.full = QRadioButton("Full song")
        group = QButtonGroup(self)
        group.addButton(self.preview)
        group.addButton(self.full)
        self.folder = QLineEdit()
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.name = QLineEdit()
        self.stems = QCheckBox("Also the stems (vocal and accompaniment files beside it)")
        self.stems.setToolTip("As `crossmix remix --stems`: <name>_vocals and "
                              "<name>_accompaniment in the same format")

        form = QFormLayout(self)
        form.addRow("Format", self.format)
        form.addRow("Bitrate", self.bitrate)
        form.addRow("Length", self.preview)
        form.addRow("", self.full)
        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        form.addRow("Folder", row)
        if batch:
            self.names_note = QLabel(
                f"Each file is named “query x match”, e.g. “{self.suggested_name}”; a name "
                "already taken gets a number, so no file is replaced.")
            self.names_note.setWordWrap(True)
            form.addRow("File names", self.names_note)
        else:
            form.addRow("File name", self.name)
        form.addRow("", self.stems)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

        self.format.setCurrentText(settings.get("export/format"))
        self.bitrate.setCurrentText(settings.get("export/bitrate"))
        (self.full if settings.get("export/full") else self.preview).setChecked(True)
        self.stems.setChecked(bool(settings.get("export/stems")))
        folder = settings.get("export/directory") or str(Path.home())
        self.folder.setText(folder)
        self.name.setText(self.suggested_name)
        self.format.currentTextChanged.connect(self._format_changed)
        self._format_changed(self.format.currentText())

    def _format_changed(self, fmt: str) -> None:
        self.bitrate.setEnabled(fmt in LOSSY)

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Export to folder", self.folder.text())
        if d:
            self.folder.setText(d)

    def choice(self) -> ExportChoice:
        fmt = self.format.currentText()
        name = export_file_name(self.name.text().strip() or self.suggested_name, fmt)
        return ExportChoice(path=Path(self.folder.text()).expanduser() / name,
                            format=fmt, bitrate=self.bitrate.currentText(),
                            full=self.full.isChecked(), overwrite=self.overwrite,
                            stems=self.stems.isChecked())

    def remember(self) -> None:
        c = self.choice()
        self.settings.set("export/format", c.format)
        self.settings.set("export/bitrate", c.bitrate)
        self.settings.set("export/full", c.full)
        self.settings.set("export/directory", str(c.path.parent))
        self.settings.set("export/stems", c.stems)

    def _accept(self) -> None:
        self.overwrite = False
        if not self.folder.text().strip():
            QMessageBox.warning(self, "No folder", "Choose the folder to export to.")
            return
        if self.batch:  # numbered names: nothing to replace
            self.remember()
            self.accept()
            return
        existing = [p for p in self.choice().targets() if p.exists()]
        if existing:
            names = "\n".join(str(p) for p in existing)
            answer = QMessageBox.question(
                self, "Replace file?", f"{names} exists. Replace it?" if len(existing) == 1
                else f"These files exist:\n{names}\nReplace them?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                return
            self.overwrite = True
        self.remember()
        self.accept()


def export_progress_window(label: str, maximum: int, parent: QWidget, *, after_ms: int = 0) -> QProgressDialog:
    """The progress window of an export, with Cancel: non-modal (the app stays usable), kept
    open at 100 % until the export's task says it is done, shown after ``after_ms``."""
    dlg = QProgressDialog(label, "Cancel", 0, maximum, parent)
    dlg.setWindowTitle("Export")
    dlg.setWindowModality(Qt.WindowModality.NonModal)
    dlg.setMinimumDuration(after_ms)
    dlg.setAutoClose(False)
    dlg.setAutoReset(False)
    dlg.setValue(0)
    return dlg
