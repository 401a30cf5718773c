"""faiss indexes: exact search against numpy ground truth, IVF recall, rebuild on damage."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from core.library.catalog import Catalog, SongInfo
from core.library.index import IndexRebuiltWarning, IndexStore, VectorIndex, normalize_rows


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    return normalize_rows(rng.standard_normal((n, d)).astype(np.float32))


def test_flat_search_matches_numpy_brute_force(rng: np.random.Generator) -> None:
    n, d, k = 3000, 64, 10
    x = _unit(rng, n, d)
    ids = rng.permutation(10 * n)[:n].astype(np.int64)  # arbitrary, non-contiguous ids
    q = _unit(rng, 20, d)
    idx = VectorIndex.build(ids, x, kind="flat")
    sims, got = idx.search(q, k)
    truth = q @ x.T
    order = np.argsort(-truth, axis=1)[:, :k]
    np.testing.assert_array_equal(got, ids[order])
    np.testing.assert_allclose(sims, np.take_along_axis(truth, order, axis=1), atol=1e-5)


def test_search_pads_when_k_exceeds_size(rng: np.random.Generator) -> None:
    idx = VectorIndex.build([5, 7], _unit(rng, 2, 8))
    sims, ids = idx.search(_unit(rng, 1, 8), 4)
    assert sorted(ids[0, :2].tolist()) == [5, 7] and ids[0, 2:].tolist() == [-1, -1]
    assert np.all(np.isneginf(sims[0, 2:]))
    empty = VectorIndex.build(np.zeros(0, np.int64), np.zeros((0, 8), np.float32))
    assert empty.search(_unit(rng, 1, 8), 3)[1].tolist() == [[-1, -1, -1]]


def test_ivf_recall_against_exact(rng: np.random.Generator) -> None:
    # clustered data, like song embeddings (genres, artists) rather than uniform noise
    n, d, k = 20000, 32, 10
    centres = _unit(rng, 200, d)
    x = normalize_rows(centres[rng.integers(0, 200, n)] + 0.15 * rng.standard_normal((n, d)))
    q = normalize_rows(x[rng.integers(0, n, 100)] + 0.1 * rng.standard_normal((100, d)))
    ids = np.arange(n)
    exact = VectorIndex.build(ids, x, kind="flat").search(q, k)[1]
    approx = VectorIndex.build(ids, x, kind="ivf").search(q, k)[1]
    recall = np.mean([len(set(a) & set(e)) / k for a, e in zip(approx, exact, strict=True)])
    assert recall >= 0.95


def test_auto_kind_switches_above_the_flat_limit(rng: np.random.Generator,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import core.library.index as ci

    x = _unit(rng, 500, 16)
    assert VectorIndex.build(np.arange(500), x).kind == "flat"
    monkeypatch.setattr(ci, "FLAT_LIMIT", 100)
    assert VectorIndex.build(np.arange(500), x).kind == "ivfpq"


def test_ivfpq_reranked_recall_against_exact(rng: np.random.Generator) -> None:
    """The compressed index alone ranks poorly (16 bytes a vector here); re-ranking its
    candidates by the exact vectors brings recall@10 back above 0.95, with exact cosines."""
    n, d, k = 20000, 64, 10
    centres = _unit(rng, 200, d)
    x = normalize_rows(centres[rng.integers(0, 200, n)] + 0.15 * rng.standard_normal((n, d)))
    q = normalize_rows(x[rng.integers(0, n, 100)] + 0.1 * rng.standard_normal((100, d)))
    ids = np.arange(n) * 7 + 3  # ids are not positions
    truth_s, truth = VectorIndex.build(ids, x, kind="flat").search(q, k)
    pq = VectorIndex.build(ids, x, kind="ivfpq", nprobe=64, rerank=20)
    assert pq.index.code_size == d // 4

    def recall(found: np.ndarray) -> float:
        return float(np.mean([len(set(a) & set(e)) / k for a, e in zip(found, truth, strict=True)]))

    rows = {int(i): v for i, v in zip(ids, x, strict=True)}
    sims, got = pq.search(q, k, exact=lambda c: {int(i): rows[int(i)] for i in c})
    assert recall(got) >= 0.95 > recall(pq.search(q, k)[1])
    hit = got == truth
    np.testing.assert_allclose(sims[hit], truth_s[hit], atol=1e-5)  # exact similarities


def _catalog(tmp_path: Path, rng: np.random.Generator, n: int = 50) -> Catalog:
    cat = Catalog.open(tmp_path / "c.sqlite")
    cat.set_model_id("m1")
    for i in range(n):
        cat.put_song(path=f"/s/{i}.wav", size=1, mtime_ns=1, info=SongInfo(f"h{i}", 1),
                     vectors={"M": _unit(rng, 1, 16)[0]}, model_id="m1", mode="fast")
    return cat


def test_store_builds_saves_and_reloads(tmp_path: Path, rng: np.random.Generator) -> None:
    cat = _catalog(tmp_path, rng)
    store = IndexStore(tmp_path / "index", cat)
    q = _unit(rng, 1, 16)
    first = store.get("M", "m1").search(q, 5)
    ipath, jpath = store.paths("M")
    assert ipath.exists() and jpath.exists()
    assert json.loads(jpath.read_text())["ntotal"] == 50
    assert not [p for p in ipath.parent.iterdir() if p.name.endswith(".part")]
    again = IndexStore(tmp_path / "index", cat)  # a fresh process: loads, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = again.get("M", "m1").search(q, 5)
    np.testing.assert_array_equal(first[1], second[1])


def test_store_rebuilds_when_stale(tmp_path: Path, rng: np.random.Generator) -> None:
    cat = _catalog(tmp_path, rng)
    store = IndexStore(tmp_path / "index", cat)
    assert store.get("M", "m1").ntotal == 50
    cat.forget_paths(["/s/0.wav", "/s/1.wav"])
    assert IndexStore(tmp_path / "index", cat).get("M", "m1").ntotal == 48
    assert store.get("M", "m1").ntotal == 48  # the in-memory copy notices too


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_index_file_is_rebuilt_with_a_warning(tmp_path: Path, rng: np.random.Generator,
                                                      damage: str) -> None:
    cat = _catalog(tmp_path, rng)
    store = IndexStore(tmp_path / "index", cat)
    q = _unit(rng, 3, 16)
    want = store.get("M", "m1").search(q, 5)
    ipath, _ = store.paths("M")
    data = ipath.read_bytes()
    if damage == "truncate":
        ipath.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        ipath.write_bytes(os.urandom(len(data)))
    else:
        ipath.write_bytes(b"")
    fresh = IndexStore(tmp_path / "index", cat)
    with pytest.warns(IndexRebuiltWarning, match="rebuilding it from the catalog"):
        got = fresh.get("M", "m1").search(q, 5)
    np.testing.assert_array_equal(got[1], want[1])
    # and the rebuilt file is good again
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        IndexStore(tmp_path / "index", cat).get("M", "m1")


def test_missing_index_file_is_rebuilt(tmp_path: Path, rng: np.random.Generator) -> None:
    cat = _catalog(tmp_path, rng)
    IndexStore(tmp_path / "index", cat).get("M", "m1")
    for p in (tmp_path / "index").iterdir():
        p.unlink()
    assert IndexStore(tmp_path / "index", cat).get("M", "m1").ntotal == 50


@pytest.mark.parametrize("kind", ["flat", "ivf", "ivfpq"])
def test_search_restricted_to_allowed_ids(rng: np.random.Generator, kind: str) -> None:
    n, d = 2000, 32
    x = _unit(rng, n, d)
    ids = np.arange(n, dtype=np.int64) * 3
    allowed = np.sort(rng.choice(ids, size=40, replace=False))
    idx = VectorIndex.build(ids, x, kind=kind)
    idx.set_nprobe(10**6)  # probe every list: the restricted search is then exact too
    q = _unit(rng, 5, d)

    def exact(c: np.ndarray) -> dict[int, np.ndarray]:  # IVF-PQ re-ranks by these
        return {int(i): x[int(i) // 3] for i in c}

    sims, got = idx.search(q, 7, allowed=allowed, exact=exact)
    sub = x[allowed // 3]
    order = np.argsort(-(q @ sub.T), axis=1)[:, :7]
    np.testing.assert_array_equal(got, allowed[order])
    assert idx.search(q, 3, allowed=np.zeros(0, np.int64))[1].tolist() == [[-1] * 3] * 5
