"""Evaluation metrics against hand-computed rankings, and `crossmix evaluate` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.dataset import SongEntry
from training.evaluate import (
    average_precision,
    model_query_split,
    query_by_singer,
    singer_identification,
    singer_models,
)


def test_average_precision_hand_values() -> None:
    # relevant at ranks 1, 3: (1/1 + 2/3) / 2
    assert average_precision(np.array([1, 0, 1, 0], bool)) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.array([0, 0, 1], bool)) == pytest.approx(1 / 3)
    assert average_precision(np.array([1, 1], bool)) == pytest.approx(1.0)
    assert average_precision(np.array([0, 0], bool)) == 0.0


def test_query_by_singer_hand_ranking() -> None:
    # Unit vectors at angles: A songs at 0 and 10 deg, B at 25 and 100 deg, C at 180 deg.
    ang = np.deg2rad([0.0, 10.0, 25.0, 100.0, 180.0])
    vecs = np.stack([np.cos(ang), np.sin(ang)], 1).astype(np.float32)
    labels = ["A", "A", "B", "B", "C"]
    # Rankings of the other songs, nearest first:
    #   q0 (0):   1A 2B 3B 4C -> relevant at rank 1: AP 1
    #   q1 (10):  0A 2B 3B 4C -> AP 1
    #   q2 (25):  1A 0A 3B 4C -> relevant at rank 3: AP 1/3
    #   q3 (100): 2B 4C 1A 0A -> AP 1
    #   q4 (180): no other C song -> not a query
    got = query_by_singer(vecs, labels, ks=(1, 2))
    assert got["mAP"] == pytest.approx((1 + 1 + 1 / 3 + 1) / 4)
    assert got["R@1"] == pytest.approx((1 + 1 + 0 + 1) / 4)
    assert got["Pr@2"] == pytest.approx((0.5 + 0.5 + 0 + 0.5) / 4)


def test_singer_identification_top_k() -> None:
    models = np.eye(3, dtype=np.float32)
    names = ["a", "b", "c"]
    queries = np.array([[1, 0.1, 0], [0.2, 0, 1], [0.9, 1, 0]], dtype=np.float32)
    got = singer_identification(models, names, queries, ["a", "c", "a"], ks=(1, 2))
    # q0 -> a (hit); q1 -> c (hit); q2 -> b then a (miss top-1, hit top-2)
    assert got["top1"] == pytest.approx(2 / 3) and got["top2"] == pytest.approx(1.0)


def test_model_query_split_sixty_percent() -> None:
    songs = [SongEntry(Path(f"/x/{s}/{i}.wav"), s, str(i)) for s in ("a", "b") for i in range(5)]
    songs.append(SongEntry(Path("/x/c/0.wav"), "c", "0"))  # one song: left out
    songs.append(SongEntry(Path("/x/d/1.wav"), "d", "1"))
    songs.append(SongEntry(Path("/x/d/0.wav"), "d", "0"))
    m, q = model_query_split(songs)
    assert [str(songs[i].path) for i in m] == ["/x/a/0.wav", "/x/a/1.wav", "/x/a/2.wav",
                                               "/x/b/0.wav", "/x/b/1.wav", "/x/b/2.wav", "/x/d/0.wav"]
    assert [str(songs[i].path) for i in q] == ["/x/a/3.wav", "/x/a/4.wav", "/x/b/3.wav", "/x/b/4.wav", "/x/d/1.wav"]
    vecs, names = singer_models(np.array([[1, 0], [3, 0], [0, 2]], np.float32), ["x", "x", "y"])
    assert names == ["x", "y"] and np.allclose(vecs, [[1, 0], [0, 1]])


@pytest.fixture(scope="module")
def toy_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.toy import make_toy_corpus

    return make_toy_corpus(tmp_path_factory.mktemp("toy") / "songs", singers=4, songs=3, seconds=4.0)


def test_evaluate_cli_split_all_json(toy_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli import main
    from core.embedding.encoders import EncoderPair

    model = EncoderPair.tiny(seed=1).save(tmp_path / "tiny")
    out = tmp_path / "eval.json"
    rc = main(["evaluate", "--data", str(toy_folder), "--model", str(model), "--split", "all",
               "--vocals", "stems", "--cache", str(tmp_path / "cache"), "--json", str(out), "--device", "cpu"])
    assert rc == 0
    table = capsys.readouterr().out
    assert "Singer identification" in table and "MFCC mean" in table
    rep = json.loads(out.read_text())
    assert rep["model"] == EncoderPair.tiny(seed=1).model_id
    assert rep["n_singers"] == 4 and rep["n_queries"] == 4  # 3 songs: 2 model + 1 query each
    assert set(rep["singer_id"]) == {"M->M", "V->V", "M->V", "V->M", "[M+V]", "[M,V]"}
    assert set(rep["query_by_singer"]) == {"M", "V", "[M+V]", "[M,V]"}
    for r in rep["query_by_singer"].values():
        assert set(r) == {"R@5", "R@10", "Pr@5", "Pr@10", "mAP"} and all(0 <= x <= 1 for x in r.values())
    assert set(rep["baseline_mfcc"]) == {"singer_id", "query_by_singer"}
    assert set(rep["baseline_mfcc"]["singer_id"]) == {"top1", "top5"}
    # a checkpoint without a training split cannot be evaluated on "test" singers
    assert main(["evaluate", "--data", str(toy_folder), "--model", str(model), "--vocals", "stems",
                 "--cache", str(tmp_path / "cache")]) == 1


def test_own_song_retrieval_counts_a_songs_own_item_first() -> None:
    import numpy as np

    from training.evaluate import own_song_retrieval

    items = np.eye(4, dtype=np.float32)
    queries = np.array([[1, 0, 0, 0], [0, 0.2, 1, 0], [0, 0, 1, 0], [0.9, 0, 0, 0.5]], dtype=np.float32)
    r = own_song_retrieval(queries, items)
    assert r == {"top1": 0.5, "top5": 1.0}  # songs 0 and 2 find themselves first; 1 and 3 second
