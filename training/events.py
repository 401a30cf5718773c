"""The JSON-lines events of the trainers, one dataclass each.

The encoder trainer (:func:`training.trainer.train`) reports to an ``emit(event)`` callback;
``crossmix train --json-progress`` prints each event as one line (:meth:`Event.to_json`), and
the app reads the lines back with :func:`parse_event`. The query-based separator's trainer
(:func:`training.aqss_train.train`) writes its own events (:func:`parse_qsep_event`) to its
``log.jsonl`` and stdout. Every line is a JSON object whose ``"event"`` key names the kind;
the other keys are the dataclass's fields (all of them, ``null`` where there is no value).

A reader meets lines it cannot use: :class:`MalformedEventError` (not JSON, not an object, a
field missing or of the wrong type) and :class:`UnknownEventError` (a kind this version does
not know, e.g. from a newer trainer; ``.kind`` names it). Both are :class:`EventError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Self, TypeVar

from core.errors import TrainingError
from core.progress import Progress
from training.typed_json import TypedJsonError, from_plain, to_plain

#: Why a run ended (:attr:`DoneEvent.stopped`).
Stopped = Literal["early_stopping", "max_epochs", "interrupted"]


class EventError(TrainingError):
    """A line of a trainer's output is not an event this version can read."""


class MalformedEventError(EventError):
    """Not JSON, not an object with an ``"event"`` kind, or a field missing or mistyped."""


class UnknownEventError(EventError):
    """An event kind this version does not know (``kind``)."""

    def __init__(self, kind: str, known: list[str]) -> None:
        self.kind = kind
        super().__init__(f"Unknown training event {kind!r} (known: {', '.join(known)}).")


@dataclass(frozen=True, kw_only=True)
class Event:
    """One event; subclasses set :attr:`kind` (the line's ``"event"`` value)."""

    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **to_plain(self)}

    def to_json(self) -> str:
        """One line of JSON (no newline)."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        if not isinstance(data, dict) or data.get("event") != cls.kind:
            raise MalformedEventError(f"Not a {cls.kind!r} event: {str(data)[:80]}")
        try:
            return from_plain(cls, {k: v for k, v in data.items() if k != "event"},
                              what=f"{cls.kind!r} event")
        except TypedJsonError as exc:
            raise MalformedEventError(str(exc)) from None

    @classmethod
    def from_json(cls, line: str | bytes) -> Self:
        return cls.from_dict(_load(line))


# --- the encoder trainer (crossmix train) ------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TrainEvent(Event):
    """An event of :func:`training.trainer.train` (``crossmix train --json-progress``)."""


@dataclass(frozen=True, kw_only=True)
class SplitEvent(TrainEvent):
    """The folder was read and its singers split."""

    kind: ClassVar[str] = "split"
    singers: int
    songs: int
    train: int
    val: int
    test: int
    #: ``(path, why)`` of files that were not used (at most 50).
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seed: int


@dataclass(frozen=True, kw_only=True)
class PrepareEvent(TrainEvent):
    """Progress of the data preparation (separation, features, GE2E outputs)."""

    kind: ClassVar[str] = "prepare"
    stage: str
    done: float
    total: float
    unit: str = ""
    message: str = ""
    eta_s: float | None = None

    @classmethod
    def from_progress(cls, p: Progress) -> PrepareEvent:
        return cls(stage=p.stage, done=p.done, total=p.total, unit=p.unit, message=p.message,
                   eta_s=p.eta_s)


@dataclass(frozen=True, kw_only=True)
class StartEvent(TrainEvent):
    """Training starts (after the data are prepared): the model and what it trains on."""

    kind: ClassVar[str] = "start"
    device: str
    width: float
    loss: str
    arch: str
    sampling: str
    pairs: str
    teacher: float
    lambdas: tuple[float, float, float, float]
    train_segments: int
    train_singers: int
    val_singers: int
    batches_per_epoch: int
    max_epochs: int
    parameters: int


@dataclass(frozen=True, kw_only=True)
class ResumeEvent(TrainEvent):
    """A run continues from its saved state."""

    kind: ClassVar[str] = "resume"
    epoch: int
    batch: int
    best_val_loss: float


@dataclass(frozen=True, kw_only=True)
class BatchEvent(TrainEvent):
    """Every ``log_every`` batches (and an epoch's last): the batch loss and the time left."""

    kind: ClassVar[str] = "batch"
    epoch: int
    batch: int
    batches: int
    step: int
    loss: float
    terms: dict[str, float] = field(default_factory=dict)
    lr: float
    elapsed_s: float
    epoch_eta_s: float
    eta_s: float


@dataclass(frozen=True, kw_only=True)
class EpochEvent(TrainEvent):
    """An epoch ended: its training and validation losses and the best so far."""

    kind: ClassVar[str] = "epoch"
    epoch: int
    train_loss: float
    val_loss: float
    val_source: str = "validation singers"
    best_val_loss: float
    best_epoch: int
    epochs_since_best: int
    improved: bool
    checkpoint: str
    elapsed_s: float
    eta_s: float


@dataclass(frozen=True, kw_only=True)
class DoneEvent(TrainEvent):
    """The last event of a run that ended on its own or was interrupted (then resumable)."""

    kind: ClassVar[str] = "done"
    stopped: Stopped
    resumable: bool
    best_checkpoint: str | None
    best_val_loss: float | None
    #: ``None`` when interrupted.
    best_epoch: int | None = None
    epochs: int | None = None
    #: Path of ``evaluation.json`` (a finished run with test singers), else ``None``.
    evaluation: str | None = None
    #: Path of ``state.pt`` (an interrupted run), else ``None``.
    state: str | None = None


@dataclass(frozen=True, kw_only=True)
class ErrorEvent(TrainEvent):
    """The run failed (``crossmix train`` then exits with status 1)."""

    kind: ClassVar[str] = "error"
    #: The exception's class name (``"TrainingError"``, ...).
    type: str
    message: str


@dataclass(frozen=True, kw_only=True)
class WarningEvent(TrainEvent):
    """Something the user should know; the run goes on."""

    kind: ClassVar[str] = "warning"
    message: str
    #: ``(path, why)`` of files concerned, if any (at most 50).
    files: list[tuple[str, str]] = field(default_factory=list)


TRAIN_EVENTS: tuple[type[TrainEvent], ...] = (
    SplitEvent, PrepareEvent, StartEvent, ResumeEvent, BatchEvent, EpochEvent, DoneEvent,
    ErrorEvent, WarningEvent)


# --- the query-based separator's trainer (crossmix train-qsep) ---------------------------------


@dataclass(frozen=True, kw_only=True)
class QSepEvent(Event):
    """An event of :func:`training.aqss_train.train` (its ``log.jsonl`` and stdout)."""


@dataclass(frozen=True, kw_only=True)
class QSepResumeEvent(QSepEvent):
    kind: ClassVar[str] = "resume"
    step: int
    elapsed_s: float


@dataclass(frozen=True, kw_only=True)
class QSepTrainEvent(QSepEvent):
    """Means of the last ``log_every`` steps' losses."""

    kind: ClassVar[str] = "train"
    step: int
    elapsed_s: float
    loss: float
    rec: float
    kl: float
    latent: float
    lr: float
    wave: float = 0.0   # the waveform SDR loss (negative dB; 0 in runs without it and older logs)


@dataclass(frozen=True, kw_only=True)
class QSepValEvent(QSepEvent):
    """A validation: the SI-SDR improvement (dB) on the fixed validation mixtures (the mean
    chooses the best model; ``by_class``: the median per target class, absent from older logs)."""

    kind: ClassVar[str] = "val"
    step: int
    elapsed_s: float
    val_sisdri_mean: float
    val_sisdri_median: float
    by_class: dict[str, float] = field(default_factory=dict)


QSEP_EVENTS: tuple[type[QSepEvent], ...] = (QSepResumeEvent, QSepTrainEvent, QSepValEvent)

E = TypeVar("E", bound=Event)


def parse_event(line: str | bytes) -> TrainEvent:
    """The :class:`TrainEvent` of one line of ``crossmix train --json-progress``.

    Raises
    ------
    MalformedEventError, UnknownEventError
    """
    return _parse(line, TRAIN_EVENTS)


def parse_qsep_event(line: str | bytes) -> QSepEvent:
    """The :class:`QSepEvent` of one line of ``crossmix train-qsep`` (or its ``log.jsonl``)."""
    return _parse(line, QSEP_EVENTS)


def _parse(line: str | bytes, family: tuple[type[E], ...]) -> E:
    data = _load(line)
    kind = data.get("event")
    if not isinstance(kind, str):
        raise MalformedEventError(f"No \"event\" kind in {str(line)[:80]!r}.")
    for cls in family:
        if cls.kind == kind:
            return cls.from_dict(data)
    raise UnknownEventError(kind, [cls.kind for cls in family])


def _load(line: str | bytes) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise MalformedEventError(f"Not a JSON line: {str(line)[:80]!r}.") from None
    if not isinstance(data, dict):
        raise MalformedEventError(f"Not a JSON object: {str(line)[:80]!r}.")
    return data
