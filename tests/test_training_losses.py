"""Equation 4 of Kim et al. 2021: each hinge term against hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch

from training.losses import (
    PRESETS,
    LossWeights,
    cosine_distance,
    hinge_term,
    structure_preserving_loss,
)


def _t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_cosine_distance_hand_values() -> None:
    assert float(cosine_distance(_t([1, 0]), _t([0, 3]))) == pytest.approx(0.0, abs=1e-7)
    assert float(cosine_distance(_t([1, 0]), _t([2, 0]))) == pytest.approx(-1.0)
    assert float(cosine_distance(_t([1, 1]), _t([1, 0]))) == pytest.approx(-1 / math.sqrt(2))


def test_hinge_term_hand_example() -> None:
    # anchor (1,0); positive at 60 degrees: d = -0.5; negatives at 0 and 90 degrees: d = -1, 0.
    a = _t([1.0, 0.0])
    p = _t([0.5, math.sqrt(3) / 2])
    n = torch.tensor([[[3.0, 0.0], [0.0, 1.0]]])
    # [0.4 - 0.5 + 1]+ + [0.4 - 0.5 - 0]+ = 0.9 + 0
    assert float(hinge_term(a, p, n, margin=0.4)[0]) == pytest.approx(0.9, abs=1e-6)
    # a larger margin turns the second negative on too: [1 - 0.5 + 1] + [1 - 0.5] = 2.0
    assert float(hinge_term(a, p, n, margin=1.0)[0]) == pytest.approx(2.0, abs=1e-6)


def _example() -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    # One triplet, one negative, 2-d embeddings chosen so each term differs.
    v = (_t([1.0, 0.0]), _t([0.0, 1.0]), torch.tensor([[[1.0, 0.0]]]))
    m = (_t([0.0, 1.0]), _t([1.0, 1.0]), torch.tensor([[[-1.0, 0.0]]]))
    return v, m


def test_each_term_alone() -> None:
    v, m = _example()
    r2 = 1 / math.sqrt(2)
    expected = {
        # (4a) v_a=(1,0): d(v_a,m_p)=-r2, d(v_a,m_n)=+1 -> [0.4 - r2 - 1]+ = 0
        "vocal-mix": max(0.0, 0.4 - r2 - 1.0),
        # (4b) m_a=(0,1): d(m_a,v_p)=-1, d(m_a,v_n)=0 -> [0.4 - 1 - 0]+ = 0
        "mix-vocal": max(0.0, 0.4 - 1.0 - 0.0),
        # (4c) d(m_a,m_p)=-r2, d(m_a,m_n)=0 -> [0.4 - r2]+ = 0
        "mix-mix": max(0.0, 0.4 - r2),
        # (4d) d(v_a,v_p)=0, d(v_a,v_n)=-1 -> [0.4 + 0 + 1]+ = 1.4
        "vocal-vocal": 1.4,
    }
    for k, name in enumerate(("vocal-mix", "mix-vocal", "mix-mix", "vocal-vocal")):
        lam = [0.0] * 4
        lam[k] = 1.0
        loss, terms = structure_preserving_loss(v=v, m=m, weights=LossWeights(*lam))
        assert float(loss) == pytest.approx(expected[name], abs=1e-6)
        assert list(terms) == [name]


def test_swapped_anchor_makes_cross_terms_active() -> None:
    # Anchor vocal close to the negative mix: (4a) = [0.4 + d(v_a,m_p) - d(v_a,m_n)]
    v = (_t([1.0, 0.0]), _t([1.0, 0.0]), torch.tensor([[[0.0, 1.0]]]))
    m = (_t([0.0, 1.0]), _t([0.0, 1.0]), torch.tensor([[[1.0, 0.0]]]))
    loss, _ = structure_preserving_loss(v=v, m=m, weights=LossWeights(1, 0, 0, 0))
    assert float(loss) == pytest.approx(0.4 + 0.0 - (-1.0))  # 1.4
    loss2, _ = structure_preserving_loss(v=v, m=m, weights=LossWeights(0, 1, 0, 0))
    # (4b): m_a=(0,1), v_p=(1,0) d=0, v_n=(0,1) d=-1 -> 0.4 + 0 + 1 = 1.4
    assert float(loss2) == pytest.approx(1.4)


def test_cross_sp_is_the_weighted_sum_and_batch_mean() -> None:
    v, m = _example()
    loss, terms = structure_preserving_loss(v=v, m=m, weights=LossWeights.preset("cross-sp"))
    assert float(loss) == pytest.approx(0.25 * sum(terms.values()), abs=1e-6)
    assert float(loss) == pytest.approx(0.25 * 1.4, abs=1e-6)
    # a batch of the same triplet twice has the same mean
    v2 = tuple(torch.cat([x, x]) for x in v)
    m2 = tuple(torch.cat([x, x]) for x in m)
    loss2, _ = structure_preserving_loss(v=v2, m=m2, weights=LossWeights.preset("cross-sp"))  # type: ignore[arg-type]
    assert float(loss2) == pytest.approx(float(loss))


def test_presets_and_missing_domain() -> None:
    assert PRESETS["mixed"] == (0, 0, 1, 0) and PRESETS["cross"] == (1, 0, 0, 0)
    assert PRESETS["cross-sp"] == (0.25,) * 4
    _, m = _example()
    loss, terms = structure_preserving_loss(v=None, m=m, weights=LossWeights.preset("mixed"))
    assert list(terms) == ["mix-mix"]
    with pytest.raises(ValueError):
        structure_preserving_loss(v=None, m=m, weights=LossWeights.preset("cross"))
    with pytest.raises(ValueError):
        LossWeights.preset("nope")


def test_gradient_flows_to_both_domains() -> None:
    g = torch.Generator().manual_seed(0)
    shapes = ((3, 8), (3, 8), (3, 4, 8))
    v = tuple(torch.randn(s, generator=g).requires_grad_(True) for s in shapes)
    m = tuple(torch.randn(s, generator=g).requires_grad_(True) for s in shapes)
    w = LossWeights(1.0, 1.0, 1.0, 1.0, margin=2.0)  # a big margin makes every hinge active
    loss, _ = structure_preserving_loss(v=v, m=m, weights=w)  # type: ignore[arg-type]
    loss.backward()
    assert all(x.grad is not None and float(x.grad.abs().sum()) > 0 for x in (*v, *m))
