"""The Retrain tab's form: the widgets that edit a :class:`training.trainer.TrainConfig`.

:meth:`TrainingForm.config` builds the config (checked with ``TrainConfig.check``, its messages
naming the form's fields, :func:`form_advice`); the data source (the library or a folder /
manifest file) is :meth:`TrainingForm.folder_source`. The form is remembered in the settings
(``train/*``) as it is edited.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from core.errors import TrainingError
from gui.settings import Settings
from training.trainer import TrainConfig

LOSSES = (("MIXED", "mixed", (0.0, 0.0, 1.0, 0.0)),
          ("CROSS", "cross", (1.0, 0.0, 0.0, 0.0)),
          ("CROSS-SP", "cross-sp", (0.25, 0.25, 0.25, 0.25)),
          ("InfoNCE (CVSM's contrastive NT-Xent)", "infonce", (0.25, 0.25, 0.25, 0.25)))
LAMBDA_NAMES = ("λ1 vocal→mix", "λ2 mix→vocal", "λ3 mix→mix", "λ4 vocal→vocal")
PAIRS = (("Singer labels (artist tags)", "label"),
         ("Label-agnostic: works on a library without artist tags", "agnostic"))
SAMPLING = (("Real: each song's own mix (the paper)", "real"),
            ("Artificial: a vocal over another song's accompaniment", "artificial"),
            ("Both (half each)", "both"))
ARCHS = (("CNN (the paper's encoders)", "cnn"),
         ("GE2E heads (trained on resemblyzer's frozen speaker encoder)", "ge2e"))
#: How the trainer's advice names a flag -> what the Retrain form calls it.
FORM_NAMES: tuple[tuple[str, str], ...] = (
    ("--val-fraction / --test-fraction",
     "“Held-out singers” (0 holds none out: no validation or test singers)"),
    ("--val-fraction", "“Held-out singers”"),
    ("--test-fraction", "“Held-out singers”"),
    ("--pairs agnostic", "Pairs “Label-agnostic” (with the InfoNCE loss)"),
    ("--loss infonce", "Loss “InfoNCE”"),
    ("--device cpu or auto", "Device “cpu” or “auto”"),
    ("--device cpu", "Device “cpu”"),
    ("--teacher", "“Teacher weight”"),
    ("--data", "the Data choice"),
    ("--resume", "Resume"),
    ("with crossmix evaluate", "with 'crossmix evaluate' on the command line"),
)


def form_advice(message: str) -> str:
    """The trainer's message with its command-line flags named as the form names them."""
    for flag, name in FORM_NAMES:
        message = message.replace(flag, name)
    return message


def _parse_lambdas(text: str) -> tuple[float, ...] | None:
    try:
        vals = tuple(float(x) for x in text.split(","))
    except ValueError:
        return None
    return vals if len(vals) == 4 else None


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _spin(v: int, lo: int, hi: int) -> QSpinBox:
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setValue(v)
    return s


def _dspin(v: float, lo: float, hi: float, step: float) -> QDoubleSpinBox:
    s = QDoubleSpinBox()
    s.setDecimals(3)
    s.setRange(lo, hi)
    s.setSingleStep(step)
    s.setValue(v)
    return s


def _combo(items: tuple[tuple[str, str], ...]) -> QComboBox:
    c = QComboBox()
    for label, value in items:
        c.addItem(label, value)
    return c


def _select(combo: QComboBox, value: Any) -> None:
    i = combo.findData(value)
    if i >= 0:
        combo.setCurrentIndex(i)


class TrainingForm(QWidget):
    """The data source and the training settings, remembered in ``settings``."""

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self._restoring = False
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self._build_source())
        lay.addWidget(self._build_settings())
        self.load()
        self.loss.currentIndexChanged.connect(self._loss_changed)
        self.arch.currentIndexChanged.connect(lambda _i: self._update_enabled())
        self._update_enabled()
        self._save_on_change()

    # --- building ---------------------------------------------------------------------------

    def _build_source(self) -> QGroupBox:
        self.src_library = QRadioButton("The library's songs, labelled by their artist tags")
        self.src_folder = QRadioButton("A folder (manifest.csv or artist tags) or a manifest file")
        grp = QButtonGroup(self)
        grp.addButton(self.src_library)
        grp.addButton(self.src_folder)
        self.src_library.setChecked(True)
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("folder of songs labelled by singer, or a .csv manifest")
        self.folder.textChanged.connect(lambda _t: self.src_folder.setChecked(True))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        src = QGroupBox("Data")
        sl = QGridLayout(src)
        sl.addWidget(self.src_library, 0, 0, 1, 3)
        sl.addWidget(self.src_folder, 1, 0, 1, 3)
        sl.addWidget(self.folder, 2, 0, 1, 2)
        sl.addWidget(browse, 2, 2)
        return src

    def _build_settings(self) -> QGroupBox:
        self._build_loss_widgets()
        self._build_schedule_widgets()
        hp = QGroupBox("Training")
        form = QFormLayout(hp)
        lam_row = QHBoxLayout()
        for sp in self.lambdas:
            lam_row.addWidget(sp)
        rows: tuple[tuple[str, Any], ...] = (
            ("Loss", self.loss), ("Lambdas", lam_row), ("Margin", self.margin),
            ("Temperature", self.temperature), ("Pairs", self.pairs), ("Mixes", self.sampling),
            ("Architecture", self.arch), ("Head hidden units", self.head_hidden),
            ("Teacher weight", self.teacher), ("Batches per epoch", self.batches),
            ("Max epochs", self.epochs), ("Patience (epochs)", self.patience),
            ("Device", self.device), ("Width (× paper's filters)", self.width_mult),
            ("Batch size", self.batch_size), ("Vocals", self.vocals),
            ("Held-out singers (validation, test)", self.held_out))
        for label, w in rows:
            form.addRow(label, w)
        self.form_note = QLabel("")
        self.form_note.setWordWrap(True)
        form.addRow(self.form_note)
        return hp

    def _build_loss_widgets(self) -> None:
        self.loss = QComboBox()
        for label, name, _lam in LOSSES:
            self.loss.addItem(label, name)
        self.lambdas: list[QDoubleSpinBox] = []
        for name in LAMBDA_NAMES:
            sp = _dspin(0.0, 0.0, 10.0, 0.05)
            sp.setDecimals(2)
            sp.setToolTip(name)
            self.lambdas.append(sp)
        self.margin = _dspin(0.4, 0.0, 2.0, 0.05)
        self.margin.setToolTip("Triplet losses: hinge margin on cosine distance")
        self.temperature = _dspin(0.1, 0.01, 2.0, 0.01)
        self.temperature.setToolTip("InfoNCE: NT-Xent temperature")
        self.pairs = _combo(PAIRS)
        self.pairs.setToolTip("InfoNCE only. Label-agnostic pairs come from the same song, so "
                              "the library needs no artist tags.")
        self.sampling = _combo(SAMPLING)
        self.sampling.setToolTip("The mixes the mix encoder sees during training")
        self.arch = _combo(ARCHS)
        self.head_hidden = _spin(512, 16, 4096)
        self.head_hidden.setToolTip("GE2E heads: hidden units of each head")
        self.teacher = _dspin(0.0, 0.0, 10.0, 0.1)
        self.teacher.setToolTip("Weight of a distillation loss towards resemblyzer's embedding "
                                "of the vocal (0: off)")

    def _build_schedule_widgets(self) -> None:
        self.batches = _spin(100, 1, 100000)
        self.epochs = _spin(30, 1, 100000)
        self.patience = _spin(5, 1, 1000)
        self.device = QComboBox()
        for d in ("auto", "cpu", "cuda"):
            self.device.addItem(d, d)
        if not _cuda_available():
            item = self.device.model().item(2)  # type: ignore[attr-defined]
            item.setEnabled(False)
            item.setToolTip("No CUDA GPU was found on this machine.")
            self.device.setItemText(2, "cuda (no GPU found)")
        self.width_mult = _dspin(0.25, 0.05, 4.0, 0.125)
        self.batch_size = _spin(16, 2, 512)
        self.vocals = QComboBox()
        self.vocals.addItem("Separated with Spleeter", "separated")
        self.vocals.addItem("Ground-truth stems from the manifest", "stems")
        self.held_out = _dspin(0.1, 0.0, 0.45, 0.05)
        self.held_out.setToolTip("Share of singers held out for validation, and as many for "
                                 "testing; 0 holds none out (no comparison at the end)")

    def _save_on_change(self) -> None:
        for w in (self.loss, self.pairs, self.sampling, self.arch, self.device, self.vocals):
            w.currentIndexChanged.connect(lambda _i: self.save())
        spins: tuple[QSpinBox | QDoubleSpinBox, ...] = (
            *self.lambdas, self.margin, self.temperature, self.head_hidden, self.teacher,
            self.batches, self.epochs, self.patience, self.width_mult, self.batch_size,
            self.held_out)
        for spin in spins:
            spin.valueChanged.connect(lambda _v: self.save())
        self.folder.textChanged.connect(lambda _t: self.save())
        self.src_library.toggled.connect(lambda _on: self.save())

    # --- behaviour --------------------------------------------------------------------------

    def _preset(self) -> tuple[float, ...]:
        """The chosen loss's own weights."""
        name = self.loss.currentData()
        return next(lam for _l, n, lam in LOSSES if n == name)

    def _loss_changed(self, *_: object) -> None:
        for sp, v in zip(self.lambdas, self._preset(), strict=True):
            sp.setValue(v)
        self._update_enabled()

    def _update_enabled(self) -> None:
        """Only valid combinations can be chosen: label-agnostic pairs need InfoNCE."""
        contrastive = self.loss.currentData() == "infonce"
        agnostic = self.pairs.model().item(1)  # type: ignore[attr-defined]
        agnostic.setEnabled(contrastive)
        if not contrastive and self.pairs.currentData() == "agnostic":
            _select(self.pairs, "label")
        self.pairs.setEnabled(contrastive)
        self.temperature.setEnabled(contrastive)
        self.margin.setEnabled(not contrastive)
        ge2e = self.arch.currentData() == "ge2e"
        self.head_hidden.setEnabled(ge2e)
        self.width_mult.setEnabled(not ge2e)
        self.form_note.setText(
            "" if contrastive else "Label-agnostic pairs (no artist tags needed) come with the "
            "InfoNCE loss.")

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Folder of songs labelled by singer",
                                             self.folder.text() or str(Path.home()))
        if d:
            self.folder.setText(d)

    # --- settings ---------------------------------------------------------------------------

    def load(self) -> None:
        """The form as last used (settings ``train/*``)."""
        g = self.settings.get
        self._restoring = True
        try:
            (self.src_folder if g("train/source") == "folder" else self.src_library).setChecked(
                True)
            self.folder.blockSignals(True)
            self.folder.setText(g("train/folder"))
            self.folder.blockSignals(False)
            _select(self.loss, g("train/loss"))
            self._loss_changed()
            lam = _parse_lambdas(g("train/lambdas"))
            if lam is not None:
                for sp, v in zip(self.lambdas, lam, strict=True):
                    sp.setValue(v)
            for key, combo in (("pairs", self.pairs), ("sampling", self.sampling),
                               ("arch", self.arch), ("vocals", self.vocals)):
                _select(combo, g(f"train/{key}"))
            self._update_enabled()  # an invalid pair stored by hand is not kept
            for key, spin in self._spins().items():
                spin.setValue(g(f"train/{key}"))
            device = g("train/device")
            _select(self.device, "auto" if device == "cuda" and not _cuda_available() else device)
        finally:
            self._restoring = False

    def _spins(self) -> dict[str, QSpinBox | QDoubleSpinBox]:
        """Setting name (``train/NAME``) -> its spin box."""
        return {"margin": self.margin, "temperature": self.temperature,
                "head_hidden": self.head_hidden, "teacher": self.teacher,
                "batches_per_epoch": self.batches, "epochs": self.epochs,
                "patience": self.patience, "width": self.width_mult,
                "batch_size": self.batch_size, "held_out": self.held_out}

    def save(self) -> None:
        """Remember the form (settings ``train/*``)."""
        if self._restoring:
            return
        lam = tuple(sp.value() for sp in self.lambdas)
        values: dict[str, Any] = {
            "source": "folder" if self.src_folder.isChecked() else "library",
            "folder": self.folder.text().strip(),
            "loss": self.loss.currentData(),
            "lambdas": "" if lam == tuple(self._preset()) else ",".join(f"{v:g}" for v in lam),
            "pairs": self.pairs.currentData(),
            "sampling": self.sampling.currentData(),
            "arch": self.arch.currentData(),
            "device": self.device.currentData(),
            "vocals": self.vocals.currentData(),
        }
        values.update({key: spin.value() for key, spin in self._spins().items()})
        for key, value in values.items():
            self.settings.set(f"train/{key}", value)

    # --- the config -------------------------------------------------------------------------

    def folder_source(self) -> str | None:
        """The folder or manifest file to train on; ``None`` for the library.

        Raises
        ------
        TrainingError
            The folder is chosen but not named.
        """
        if self.src_library.isChecked():
            return None
        folder = self.folder.text().strip()
        if not folder:
            raise TrainingError("Choose a folder of songs labelled by singer (or use the library).")
        return folder

    def config(self, *, data: Path | str = "", out: Path | str = "") -> TrainConfig:
        """The form as a checked ``TrainConfig``.

        Raises
        ------
        TrainingError
            The settings do not go together (the message names the form's fields).
        """
        name, preset = self.loss.currentData(), self._preset()
        lam = tuple(float(sp.value()) for sp in self.lambdas)
        if not any(lam):
            raise TrainingError("The loss weights (lambdas) are all 0: give at least one a "
                                "weight.")
        held = round(float(self.held_out.value()), 6)
        cfg = TrainConfig(
            data=str(data), out=str(out), loss=name,
            lambdas=None if lam == tuple(preset) else (lam[0], lam[1], lam[2], lam[3]),
            margin=float(self.margin.value()), width=float(self.width_mult.value()),
            max_epochs=self.epochs.value(), batches_per_epoch=self.batches.value(),
            batch_size=self.batch_size.value(), patience=self.patience.value(),
            val_fraction=held, test_fraction=held, vocals=str(self.vocals.currentData()),
            device=str(self.device.currentData()), sampling=str(self.sampling.currentData()),
            pairs=str(self.pairs.currentData()), temperature=float(self.temperature.value()),
            arch=str(self.arch.currentData()), head_hidden=self.head_hidden.value(),
            teacher=float(self.teacher.value()),
            # about 20 loss points an epoch on the plot, the first after a few batches
            log_every=max(1, min(10, self.batches.value() // 20)))
        try:
            cfg.check()
        except TrainingError as exc:
            raise TrainingError(form_advice(str(exc))) from None
        return cfg
