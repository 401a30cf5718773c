"""The structure-preserving triplet loss of Kim et al. 2021 (equation 4) and its special cases.

For triplet ``i`` with anchor ``a``, positive ``p`` and negatives ``n_j`` (``m`` = mix
embedding through f_m, ``v`` = vocal embedding through f_v)::

    L = l1 * sum_j [M + d(v_a, m_p) - d(v_a, m_nj)]+    (4a) vocal-mix
      + l2 * sum_j [M + d(m_a, v_p) - d(m_a, v_nj)]+    (4b) mix-vocal
      + l3 * sum_j [M + d(m_a, m_p) - d(m_a, m_nj)]+    (4c) mix-mix
      + l4 * sum_j [M + d(v_a, v_p) - d(v_a, v_nj)]+    (4d) vocal-vocal

with the cosine distance ``d(x, y) = -x.y / (|x| |y|)`` and margin ``M = 0.4``. A batch's loss
is the mean over its triplets. MIXED is ``l3 = 1``, CROSS ``l1 = 1``, CROSS-SP all ``1/4``.

CVSM's contrastive objective (Garoufis et al.) is :func:`info_nce` (NT-Xent) over in-batch
negatives; :func:`contrastive_loss` weighs its four directions with the same lambdas
(vocal->mix, mix->vocal, mix->mix, vocal->vocal).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

MARGIN = 0.4
#: The paper's models as (lambda1, lambda2, lambda3, lambda4).
PRESETS: dict[str, tuple[float, float, float, float]] = {
    "mixed": (0.0, 0.0, 1.0, 0.0),
    "cross": (1.0, 0.0, 0.0, 0.0),
    "cross-sp": (0.25, 0.25, 0.25, 0.25),
    "infonce": (0.25, 0.25, 0.25, 0.25),
}
#: Losses that are contrastive (NT-Xent) rather than triplet (equation 4).
CONTRASTIVE = frozenset({"infonce"})
#: NT-Xent temperature (CVSM and SimCLR use 0.1).
TEMPERATURE = 0.1
#: Names of the four terms, in order.
TERMS = ("vocal-mix", "mix-vocal", "mix-mix", "vocal-vocal")


def cosine_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``-cos(x, y)`` over the last axis (broadcasting), in [-1, 1]."""
    return -F.cosine_similarity(x, y, dim=-1, eps=1e-8)


def hinge_term(anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, *,
               margin: float = MARGIN) -> torch.Tensor:
    """One hinge rank term per triplet: ``sum_j [margin + d(a, p) - d(a, n_j)]+``.

    Parameters
    ----------
    anchor, positive : torch.Tensor
        ``(batch, dim)``.
    negatives : torch.Tensor
        ``(batch, n_neg, dim)``.

    Returns
    -------
    torch.Tensor
        ``(batch,)``.
    """
    d_pos = cosine_distance(anchor, positive)  # (B,)
    d_neg = cosine_distance(anchor[:, None, :], negatives)  # (B, J)
    return torch.clamp(margin + d_pos[:, None] - d_neg, min=0.0).sum(dim=1)


@dataclass(frozen=True)
class LossWeights:
    """lambda1..lambda4 of equation 4 and the margin."""

    l1: float = 0.25
    l2: float = 0.25
    l3: float = 0.25
    l4: float = 0.25
    margin: float = MARGIN

    @classmethod
    def preset(cls, name: str, *, margin: float = MARGIN) -> LossWeights:
        try:
            lam = PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown loss {name!r}: use {', '.join(PRESETS)}") from None
        return cls(*lam, margin=margin)

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.l1, self.l2, self.l3, self.l4)

    @property
    def needs_vocal_anchor(self) -> bool:
        return self.l1 != 0 or self.l4 != 0

    @property
    def needs_mix_anchor(self) -> bool:
        return self.l2 != 0 or self.l3 != 0

    @property
    def needs_mix_targets(self) -> bool:
        return self.l1 != 0 or self.l3 != 0

    @property
    def needs_vocal_targets(self) -> bool:
        return self.l2 != 0 or self.l4 != 0


def structure_preserving_loss(
    *,
    v: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
    m: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
    weights: LossWeights,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Equation 4, mean over the batch.

    Parameters
    ----------
    v, m : (anchor (B, D), positive (B, D), negatives (B, J, D)) or None
        Vocal and mix embeddings of the triplets; a domain may be ``None`` when every term
        that uses it has weight 0.

    Returns
    -------
    loss : torch.Tensor
        Scalar.
    terms : dict
        Each term's batch mean (unweighted), for logging; terms with weight 0 are left out.
    """
    total: torch.Tensor | None = None
    terms: dict[str, float] = {}
    plan = (
        (weights.l1, v, m, TERMS[0]),
        (weights.l2, m, v, TERMS[1]),
        (weights.l3, m, m, TERMS[2]),
        (weights.l4, v, v, TERMS[3]),
    )
    for lam, anchors, targets, name in plan:
        if lam == 0:
            continue
        if anchors is None or targets is None:
            raise ValueError(f"loss term {name} has weight {lam} but its embeddings were not given")
        t = hinge_term(anchors[0], targets[1], targets[2], margin=weights.margin).mean()
        terms[name] = float(t.detach())
        total = lam * t if total is None else total + lam * t
    if total is None:
        raise ValueError("every loss weight is 0")
    return total, terms


def info_nce(anchors: torch.Tensor, positives: torch.Tensor, *, temperature: float = TEMPERATURE) -> torch.Tensor:
    """NT-Xent / InfoNCE: row ``i`` of ``anchors`` against every row of ``positives``.

    ``loss = mean_i -log( exp(s_ii / t) / sum_j exp(s_ij / t) )`` with ``s`` the cosine
    similarity: the positive of anchor ``i`` is ``positives[i]`` and the other rows are its
    in-batch negatives.

    Parameters
    ----------
    anchors, positives : torch.Tensor
        ``(B, D)``, not necessarily normalised.
    temperature : float
        ``t`` above.

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    a = F.normalize(anchors, dim=-1, eps=1e-8)
    p = F.normalize(positives, dim=-1, eps=1e-8)
    logits = a @ p.T / temperature
    return F.cross_entropy(logits, torch.arange(a.shape[0], device=a.device))


def contrastive_loss(*, v: tuple[torch.Tensor, torch.Tensor] | None, m: tuple[torch.Tensor, torch.Tensor] | None,
                     weights: LossWeights, temperature: float = TEMPERATURE) -> tuple[torch.Tensor, dict[str, float]]:
    """CVSM's objective over a batch of pairs, across the domains and within them.

    ``v = (v_a, v_p)`` and ``m = (m_a, m_p)`` are the vocal and mix embeddings ``(B, D)`` of the
    anchors and of their positives; ``m_a[i]`` holds the vocal ``v_a[i]`` (the same segment,
    real or artificial mixture). Terms (each weighted by its lambda):
    vocal->mix ``NCE(v_a, m_a)``, mix->vocal ``NCE(m_a, v_a)``, mix->mix ``NCE(m_a, m_p)``,
    vocal->vocal ``NCE(v_a, v_p)``.
    """
    total: torch.Tensor | None = None
    terms: dict[str, float] = {}
    plan = (
        (weights.l1, v[0] if v else None, m[0] if m else None, TERMS[0]),
        (weights.l2, m[0] if m else None, v[0] if v else None, TERMS[1]),
        (weights.l3, m[0] if m else None, m[1] if m else None, TERMS[2]),
        (weights.l4, v[0] if v else None, v[1] if v else None, TERMS[3]),
    )
    for lam, anchors, positives, name in plan:
        if lam == 0:
            continue
        if anchors is None or positives is None:
            raise ValueError(f"loss term {name} has weight {lam} but its embeddings were not given")
        t = info_nce(anchors, positives, temperature=temperature)
        terms[name] = float(t.detach())
        total = lam * t if total is None else total + lam * t
    if total is None:
        raise ValueError("every loss weight is 0")
    return total, terms


def teacher_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean cosine distance ``1 - cos`` of student embeddings to the teacher's ``(B, D)`` (distillation)."""
    return (1.0 - F.cosine_similarity(student, teacher.detach(), dim=-1, eps=1e-8)).mean()
