"""How well each search space works for a set of encoders, and the best space a library can serve.

The figures are measured, never guessed: ``crossmix evaluate`` on singers the encoders never
heard (singer identification top-1/top-5 per scenario, query-by-singer mAP per space). They
come from

- ``assets/encoders/quality.json``: the shipped encoders and the ``resemblyzer`` peer, by
  model id, measured for ``docs/results.md``;
- ``evaluation.json`` beside a trained checkpoint (``crossmix train`` writes it).

The app's default search is the space that measured best among those the library can serve:
``vocal->vocal`` and ``[M,V]`` need the library's vocals (songs indexed in full mode).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ModelError
from core.library.spaces import DEFAULT_SPACE, NEEDS_VOCALS, SEARCH_SPACES
from core.paths import assets_dir


def _measures(query: str, lib: str) -> tuple[str, str]:
    # the singer-ID scenario is "query->library" ("[M,V]" on both sides is named once); the
    # query-by-singer space is the library's side
    return (query if query == lib == "[M,V]" else f"{query}->{lib}", lib)


#: Search space -> the evaluation's singer-ID scenario and query-by-singer space that measure it.
SPACE_MEASURES: dict[str, tuple[str, str]] = {
    space: _measures(query, lib) for space, (query, lib) in SEARCH_SPACES.items()}
QUALITY_FILE = "quality.json"


@dataclass(frozen=True)
class SpaceQuality:
    """Singer identification top-1 / top-5 of a search space (fractions)."""

    top1: float
    top5: float


@dataclass(frozen=True)
class Quality:
    """Measured quality of a set of encoders per search space.

    ``protocol`` says on what it was measured (e.g. "50 unseen synthetic singers, 200 songs").
    """

    name: str
    protocol: str
    spaces: dict[str, SpaceQuality] = field(default_factory=dict)
    chance_top1: float = 0.0

    def best_space(self, *, has_vocals: bool) -> tuple[str, str]:
        """The space with the highest top-1 (then top-5) the library can serve, and why.

        ``has_vocals``: the library was indexed in full mode (its songs' vocals are embedded).
        """
        usable = {s: q for s, q in self.spaces.items() if has_vocals or s not in NEEDS_VOCALS}
        if not usable:
            return DEFAULT_SPACE, "no measurement for these encoders; the paper's default"
        best = max(usable, key=lambda s: (usable[s].top1, usable[s].top5, s == DEFAULT_SPACE))
        q = usable[best]
        why = f"{best} measured best for {self.name}: singer-ID top-1 {q.top1:.2f} on {self.protocol}"
        if self.chance_top1 > 0:
            why += f" (chance {self.chance_top1:.2f})"
        if not has_vocals and any(s in NEEDS_VOCALS for s in self.spaces):
            why += " (the vocal spaces need a library indexed in full mode)"
        return best, why

    def summary(self) -> str:
        """One line: each space's top-1 / top-5."""
        parts = [f"{s} {q.top1:.2f}/{q.top5:.2f}" for s, q in self.spaces.items()]
        return f"singer-ID top-1/top-5 on {self.protocol}: " + ", ".join(parts)


def from_report(report: dict[str, Any], *, name: str, peer: str | None = None) -> Quality:
    """A :class:`Quality` from a ``crossmix evaluate`` report (``peer``: one of its baselines)."""
    src = report["baselines"][peer] if peer else report
    sid = src.get("singer_id", {})
    spaces = {space: SpaceQuality(float(sid[sc]["top1"]), float(sid[sc]["top5"]))
              for space, (sc, _) in SPACE_MEASURES.items() if sc in sid}
    protocol = f"{report.get('n_singers', '?')} unseen singers, {report.get('n_songs', '?')} songs"
    return Quality(name=name, protocol=protocol, spaces=spaces, chance_top1=float(report.get("chance_top1", 0.0)))


def _known() -> dict[str, Any]:
    p = assets_dir() / "encoders" / QUALITY_FILE
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def quality_for(*, model_id: str | None, checkpoint: str | Path | None = None) -> Quality | None:
    """The measured quality of encoders, by model id (shipped, peer) or beside a checkpoint.

    Returns ``None`` when nothing was measured for them.
    """
    if model_id:
        entry = _known().get(model_id)
        if isinstance(entry, dict) and "report" in entry:
            try:
                return from_report(entry["report"], name=str(entry.get("name", model_id[:12])))
            except (KeyError, TypeError, ValueError):
                pass
    if checkpoint:
        ev = Path(checkpoint).expanduser().with_name("evaluation.json")
        try:
            report = json.loads(ev.read_text(encoding="utf-8"))
            if model_id and report.get("model") not in (None, model_id):
                return None
            return from_report(report, name=Path(checkpoint).parent.name or "trained encoders")
        except (OSError, ValueError, KeyError, TypeError):
            return None
    return None


def _checkpoint_of(choice: str | Path | None) -> str | None:
    """The checkpoint path a user's encoder choice names, or ``None`` for a named model."""
    from core.registry import encoder_names, encoders_name

    try:
        name = encoders_name(choice)
    except ModelError:
        return None
    return None if name in encoder_names() else name


def library_has_vocals(status: Any) -> bool:
    """Whether every searchable song of a library (its ``status()``) has its vocal embedded (full mode)."""
    return bool(status.full > 0 and status.full >= status.current)


def auto_space(status: Any, *, model_id: str | None, choice: str | Path | None = None) -> tuple[str, str]:
    """The space "Best measured (auto)" searches in a library (its ``status()``), and why.

    ``choice`` is the user's encoder choice (a checkpoint's ``evaluation.json`` is read beside it).
    """
    q = quality_for(model_id=model_id, checkpoint=_checkpoint_of(choice))
    if q is None:
        return DEFAULT_SPACE, f"no measured quality for these encoders, so the paper's {DEFAULT_SPACE}"
    return q.best_space(has_vocals=library_has_vocals(status))


def quality_for_choice(choice: str | Path | None) -> Quality | None:
    """The measured quality of the encoders a user chose, without loading them.

    ``choice`` as :func:`core.registry.load_encoders` takes it: empty / ``"shipped"``, a
    name (``"resemblyzer"``), or a checkpoint path (its JSON names its model id).
    """
    from core.registry import encoders_weights

    text = str(choice).strip() if choice is not None else ""
    aliases = {e["alias"]: model_id for model_id, e in _known().items() if isinstance(e, dict) and "alias" in e}
    if text in aliases:
        return quality_for(model_id=aliases[text])
    try:
        weights = encoders_weights(text)
    except ModelError:
        return None
    if weights is None:  # a model without a file of its own (resemblyzer, tiny)
        return None
    meta = weights.with_suffix(".json")
    try:
        model_id = str(json.loads(meta.read_text(encoding="utf-8")).get("model_id", ""))
    except (OSError, ValueError, AttributeError):
        return None
    return quality_for(model_id=model_id or None, checkpoint=_checkpoint_of(text))
