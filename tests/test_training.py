"""Training: labelled folders, splits, triplets, a toy run that learns, interruption and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from core.errors import Cancelled, TrainingError
from core.progress import CancelToken
from training.dataset import FeatureStore, load_dataset, split_singers
from training.events import BatchEvent, DoneEvent, TrainEvent
from training.toy import make_toy_corpus
from training.trainer import TrainConfig, train
from training.triplets import SegmentPool

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_corpus(tmp_path_factory.mktemp("toy") / "songs", singers=8, songs=3, seconds=4.0, seed=2)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def _cfg(toy: Path, out: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = dict(data=str(toy), out=str(out), width=1 / 16, batches_per_epoch=4, max_epochs=2,
                                   batch_size=4, negatives=2, segments_per_song=2, val_fraction=0.25,
                                   test_fraction=0.25, val_batches=2, vocals="stems",
                                   cache=str(out.parent / "cache"), log_every=1, device="cpu")
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_manifest_dataset_and_split(toy: Path) -> None:
    ds = load_dataset(toy)
    assert len(ds.singers) == 8 and len(ds.songs) == 24
    assert all(s.vocals is not None and s.vocals.name == "vocals.wav" for s in ds.songs)
    sp = split_singers(ds, val_fraction=0.25, test_fraction=0.25, seed=5)
    assert len(sp.test) == 2 and len(sp.val) == 2 and len(sp.train) == 4
    assert not (set(sp.train) & set(sp.val)) and not (set(sp.train) & set(sp.test)) and not (set(sp.val) & set(sp.test))
    assert split_singers(ds, val_fraction=0.25, test_fraction=0.25, seed=5) == sp
    assert split_singers(ds, val_fraction=0.25, test_fraction=0.25, seed=6) != sp
    with pytest.raises(TrainingError, match="too few"):
        split_singers(ds, val_fraction=0.45, test_fraction=0.45)


def test_artist_tags_and_stem_folders(tmp_path: Path) -> None:
    from mutagen.flac import FLAC

    tone = (0.2 * np.sin(np.arange(22050) / 10)).astype(np.float32)
    for i, artist in enumerate(["Ann", "Bob", None]):
        d = tmp_path / f"s{i}"
        d.mkdir()
        for name in ("mix", "vocals", "accompaniment"):
            sf.write(d / f"{name}.flac", tone, 22050)
            if artist:
                f = FLAC(d / f"{name}.flac")
                f["artist"] = artist
                f.save()
    sf.write(tmp_path / "loose.flac", tone, 22050)
    f = FLAC(tmp_path / "loose.flac")
    f["artist"] = "Cy"
    f["title"] = "Loose song"
    f.save()
    ds = load_dataset(tmp_path)
    assert sorted((s.singer, s.path.name, s.song) for s in ds.songs) == [
        ("Ann", "mix.flac", "s0"), ("Bob", "mix.flac", "s1"), ("Cy", "loose.flac", "Loose song")]
    assert {s.vocals.name for s in ds.songs if s.vocals} == {"vocals.flac"}
    assert [why for _, why in ds.skipped] == ["no artist tag"]
    with pytest.raises(TrainingError, match="no labelled songs"):
        load_dataset(tmp_path / "s2")


def test_bad_folders(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="no such folder"):
        load_dataset(tmp_path / "missing")
    (tmp_path / "manifest.csv").write_text("path,singer\nsong.wav,\n")
    with pytest.raises(TrainingError, match="line 2"):
        load_dataset(tmp_path)


def test_feature_store_and_triplets(toy: Path, tmp_path: Path) -> None:
    ds = load_dataset(toy)
    store = FeatureStore(tmp_path / "feat", vocals="stems", max_segments=2)
    songs = ds.songs[:9]
    kept, feats, failures = store.load_many(songs)
    assert not failures and len(kept) == 9
    assert feats[0].mix.shape == (1, 128, 129) and feats[0].mix.dtype == np.float16  # 4 s: one full segment
    assert len(list((tmp_path / "feat").rglob("*.npz"))) == 9
    again = store.get(songs[0])
    assert np.array_equal(again.mix, feats[0].mix)
    pool = SegmentPool.build(kept, feats)
    seg_singer = pool.segment_singer()
    rng = np.random.default_rng(0)
    a, p, n = pool.sample(rng, batch_size=50, negatives=2)
    assert np.all(seg_singer[a] == seg_singer[p])
    assert np.all(seg_singer[n] != seg_singer[a][:, None])
    assert np.all(seg_singer[n[:, 0]] != seg_singer[n[:, 1]])  # distinct singers when possible
    # positives come from another song of the singer (each song here has one segment)
    assert np.all(a != p)


def test_separated_vocals_through_the_stem_cache(toy: Path, tmp_path: Path) -> None:
    from core.separation.separator import Separator, StemCache

    ds = load_dataset(toy)
    cache = StemCache(tmp_path / "stems")
    store = FeatureStore(tmp_path / "feat", vocals="separated", separator=Separator.tiny(), stem_cache=cache,
                         max_segments=2)
    f = store.get(ds.songs[0])
    assert f.vocal.shape == f.mix.shape
    assert len(list((tmp_path / "stems").rglob("*.flac"))) == 1
    gt = FeatureStore(tmp_path / "feat", vocals="stems", max_segments=2).get(ds.songs[0])
    # the same mix (after the separator's 44.1 kHz round trip), another vocal
    assert np.allclose(gt.mix.astype(np.float32), f.mix.astype(np.float32), atol=0.02)
    assert not np.allclose(gt.vocal.astype(np.float32), f.vocal.astype(np.float32), atol=0.02)


def test_interrupt_and_resume_match_an_uninterrupted_run(toy: Path, tmp_path: Path) -> None:
    before = _snapshot(toy)
    torch.set_num_threads(1)
    full = train(_cfg(toy, tmp_path / "a" / "run"))
    assert full.stopped == "max_epochs" and full.best_checkpoint is not None
    events: list[TrainEvent] = []
    token = CancelToken()

    def emit(e: TrainEvent) -> None:
        events.append(e)
        if isinstance(e, BatchEvent) and e.step == 3:
            token.cancel()

    out_b = tmp_path / "b" / "run"
    part = train(_cfg(toy, out_b), emit=emit, cancel=token)
    assert part.stopped == "interrupted"
    assert isinstance(events[-1], DoneEvent) and events[-1].resumable is True
    with pytest.raises(TrainingError, match="--resume"):
        train(_cfg(toy, out_b))
    with pytest.raises(TrainingError, match="other settings"):
        train(_cfg(toy, out_b, width=0.25), resume=True)
    resumed_events: list[TrainEvent] = []
    rest = train(_cfg(toy, out_b), emit=resumed_events.append, resume=True)
    assert rest.stopped == "max_epochs"
    first = next(e for e in resumed_events if isinstance(e, BatchEvent))
    assert (first.epoch, first.batch) == (0, 4)
    a = torch.load(tmp_path / "a" / "run" / "state.pt", weights_only=True)["model"]
    b = torch.load(out_b / "state.pt", weights_only=True)["model"]
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k
    assert _snapshot(toy) == before  # the data folder is never written
    doc = json.loads((out_b / "best.json").read_text())
    assert set(doc["config"]["training"]["split"]) == {"seed", "train", "val", "test"}
    assert rest.evaluation is not None and json.loads(rest.evaluation.read_text())["n_singers"] == 2
    # `crossmix evaluate` defaults to the checkpoint's test singers and repeats the end-of-run report
    from cli import main

    out_json = tmp_path / "eval.json"
    assert main(["evaluate", "--data", str(toy), "--model", str(out_b / "best.safetensors"),
                 "--cache", str(out_b.parent / "cache"), "--json", str(out_json), "--device", "cpu"]) == 0
    again = json.loads(out_json.read_text())
    first_report = json.loads(rest.evaluation.read_text())
    assert again["singer_id"] == first_report["singer_id"] and again["model"] == first_report["model"]


def test_cancel_while_preparing(toy: Path, tmp_path: Path) -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        train(_cfg(toy, tmp_path / "run"), cancel=token)


@pytest.mark.slow
def test_a_few_hundred_steps_learn_singers(tmp_path: Path) -> None:
    """200 steps on 10 toy singers: the loss falls and the cross-domain singer ID goes from
    chance (two independent random encoders) to well above it."""
    from core.embedding.encoders import EncoderPair
    from training.evaluate import evaluate_songs

    torch.set_num_threads(1)
    root = make_toy_corpus(tmp_path / "songs", singers=10, songs=3, seconds=6.5, seed=1)
    events: list[TrainEvent] = []
    cfg = _cfg(root, tmp_path / "run", batches_per_epoch=100, max_epochs=2, batch_size=6, negatives=2,
               segments_per_song=3, val_fraction=0.2, test_fraction=0.3, val_batches=2, log_every=10)
    res = train(cfg, emit=events.append)
    losses = [e.loss for e in events if isinstance(e, BatchEvent)]
    assert len(losses) == 20
    assert np.mean(losses[-5:]) < 0.25 * np.mean(losses[:2])
    # singer ID on the training singers' songs: model from 2 songs, query the third
    ds = load_dataset(root)
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    store = FeatureStore(Path(cfg.cache or ""), vocals="stems", max_segments=3)
    songs = ds.subset(split["train"])
    feats = [store.get(s) for s in songs]
    assert res.best_checkpoint is not None
    trained = evaluate_songs(EncoderPair.load(res.best_checkpoint), songs, feats)
    untrained = evaluate_songs(EncoderPair.create(width=1 / 16), songs, feats)
    chance = trained["chance_top1"]
    assert chance == pytest.approx(1 / 5)
    for scen in ("V->M", "M->V", "[M,V]"):
        assert trained["singer_id"][scen]["top1"] >= 0.8 > chance
    assert trained["query_by_singer"]["[M,V]"]["mAP"] > untrained["query_by_singer"]["[M,V]"]["mAP"]


@pytest.mark.slow
def test_cli_json_progress_sigterm_and_resume(toy: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [sys.executable, "-m", "cli", "train", "--data", str(toy), "--out", str(out), "--width", "0.0625",
            "--batches-per-epoch", "200", "--epochs", "2", "--batch-size", "4", "--negatives", "2",
            "--segments-per-song", "2", "--val-fraction", "0.25", "--test-fraction", "0.25", "--val-batches", "1",
            "--vocals", "stems", "--cache", str(tmp_path / "cache"), "--device", "cpu", "--threads", "1",
            "--log-every", "1", "--json-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(json.loads(line))
        if lines[-1]["event"] == "batch":
            proc.send_signal(signal.SIGTERM)
            break
    rest, _ = proc.communicate(timeout=120)
    lines += [json.loads(x) for x in rest.splitlines() if x.strip()]
    assert proc.returncode == 130
    assert {e["event"] for e in lines} >= {"split", "prepare", "start", "batch", "done"}
    done = lines[-1]
    assert done["event"] == "done" and done["stopped"] == "interrupted" and done["resumable"]
    state = torch.load(out / "state.pt", weights_only=True)
    assert state["epoch"] == 0 and 1 <= state["batch"] < 200
    # resume with fewer batches than already done finishes the epoch at once
    args2 = [a if a != "200" else str(state["batch"]) for a in args] + ["--resume", "--no-eval"]
    res = subprocess.run(args2, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    events = [json.loads(x) for x in res.stdout.splitlines()]
    assert events[-1]["event"] == "done" and events[-1]["stopped"] == "max_epochs"
    assert any(e["event"] == "resume" for e in events)
