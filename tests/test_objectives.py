"""Training objectives: NT-Xent, artificial mixtures, label-agnostic data, every loss x sampling."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from core.embedding.encoders import EncoderPair
from core.embedding.features import log_mel
from core.errors import TrainingError
from training.events import SplitEvent, TrainEvent, WarningEvent
from training.losses import LossWeights, contrastive_loss, info_nce
from training.mixtures import draw_gains, make_mixtures, mix_segments
from training.toy import make_toy_corpus
from training.trainer import TrainConfig, batch_loss, prepare, train


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_corpus(tmp_path_factory.mktemp("toy") / "songs", singers=6, songs=2, seconds=7.0, seed=4)


def _cfg(toy: Path, out: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = dict(data=str(toy), out=str(out), width=1 / 16, batches_per_epoch=3, max_epochs=1,
                                   batch_size=6, negatives=2, segments_per_song=2, val_fraction=0.2,
                                   test_fraction=0.2, val_batches=1, vocals="stems",
                                   cache=str(out.parent / "cache"), log_every=1, device="cpu", evaluate=False)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


# --- NT-Xent ---------------------------------------------------------------------------------


def test_info_nce_matches_a_hand_computed_example() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # unit after normalising: e1, e2
    p = torch.tensor([[3.0, 0.0], [1.0, 1.0]])  # e1, (e1 + e2) / sqrt 2
    t = 0.5
    s = 1 / math.sqrt(2)
    # row 0: sims (1, s) -> -log(e^{2} / (e^{2} + e^{2s})); row 1: sims (0, s) -> -log(e^{2s} / (1 + e^{2s}))
    want = 0.5 * (-math.log(math.exp(2) / (math.exp(2) + math.exp(2 * s)))
                  - math.log(math.exp(2 * s) / (1 + math.exp(2 * s))))
    got = float(info_nce(a, p, temperature=t))
    assert got == pytest.approx(want, rel=1e-6)
    # Perfectly aligned, well-separated pairs cost almost nothing; swapped ones a lot.
    eye = torch.eye(4)
    assert float(info_nce(eye, eye, temperature=0.05)) < 1e-6
    assert float(info_nce(eye, eye.flip(0), temperature=0.05)) > 10


def test_contrastive_loss_weighs_its_four_directions() -> None:
    g = torch.Generator().manual_seed(0)
    v_a, v_p, m_a, m_p = (torch.randn(5, 8, generator=g) for _ in range(4))
    w = LossWeights(1.0, 0.0, 0.0, 2.0)
    loss, terms = contrastive_loss(v=(v_a, v_p), m=(m_a, m_p), weights=w, temperature=0.2)
    assert set(terms) == {"vocal-mix", "vocal-vocal"}
    want = float(info_nce(v_a, m_a, temperature=0.2)) + 2 * float(info_nce(v_a, v_p, temperature=0.2))
    assert float(loss) == pytest.approx(want, rel=1e-6)


# --- artificial mixtures ---------------------------------------------------------------------


def test_logmel_mixture_is_the_mel_of_the_summed_stems() -> None:
    sr = 22050
    t = np.arange(3 * sr) / sr
    inner = slice(2, 127)  # frames away from the zero-padded edges
    gv, ga = np.array([0.0]), np.array([-6.0])
    # Stems in separate bands: power adds exactly, so the mixture is the mel of the sum.
    vocal = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    acc = (0.2 * np.sin(2 * np.pi * 3100 * t)).astype(np.float32)
    lv, la = (log_mel(torch.from_numpy(x))[None, :, inner] for x in (vocal, acc))
    mixed = mix_segments(lv, la, frontend="logmel", vocal_gain_db=gv, acc_gain_db=ga)
    truth = log_mel(torch.from_numpy(vocal + acc * np.float32(10 ** (-6 / 20))))[None, :, inner]
    assert torch.allclose(mixed, truth, atol=1e-4), float((mixed - truth).abs().max())
    # Overlapping independent noises: the cross terms average out, so each band's mean power
    # over the segment matches the sum's.
    rng = np.random.default_rng(0)
    vocal, acc = (0.1 * rng.standard_normal(len(t))).astype(np.float32), (0.1 * rng.standard_normal(len(t))).astype(np.float32)
    lv, la = (log_mel(torch.from_numpy(x))[None, :, inner] for x in (vocal, acc))
    mixed = mix_segments(lv, la, frontend="logmel", vocal_gain_db=gv, acc_gain_db=ga)
    truth = log_mel(torch.from_numpy(vocal + acc * np.float32(10 ** (-6 / 20))))[None, :, inner]
    power = lambda x: ((10 ** x - 1) / 10).mean(dim=-1)  # noqa: E731
    rel = ((power(mixed) - power(truth)).abs() / power(truth)).median()
    assert float(rel) < 0.1, float(rel)
    # A gain of -300 dB on one stem gives the other stem back.
    only_v = mix_segments(lv, la, frontend="logmel", vocal_gain_db=gv, acc_gain_db=np.array([-300.0]))
    assert torch.allclose(only_v, lv, atol=1e-5)


def test_ge2e_mixture_is_the_normalised_mel_of_the_summed_stems() -> None:
    from core.embedding import ge2e

    sr = ge2e.SR
    t = np.arange(3 * sr) / sr
    vocal = (0.05 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    acc = (0.4 * np.sin(2 * np.pi * 2500 * t)).astype(np.float32)
    level = lambda x: 20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2)))  # noqa: E731
    starts = np.array([0.0])
    pv = ge2e.segment_mels(vocal, starts, seconds=2.9)
    pa = ge2e.segment_mels(acc, starts, seconds=2.9)
    ga = np.array([-10.0])
    mixed = mix_segments(pv, pa, frontend="ge2e", vocal_gain_db=np.array([0.0]), acc_gain_db=ga,
                         vocal_level_db=np.array([level(vocal)]), acc_level_db=np.array([level(acc)]))
    truth = ge2e.segment_mels(vocal + acc * np.float32(10 ** (-10 / 20)), starts, seconds=2.9)
    rel = float((mixed - truth).abs().max() / truth.abs().max())
    assert rel < 0.02, rel


def test_mixtures_come_from_other_songs_and_record_their_gains(toy: Path, tmp_path: Path) -> None:
    cfg = _cfg(toy, tmp_path / "run", sampling="artificial")
    prep = prepare(cfg, emit=lambda e: None, device=torch.device("cpu"))
    pool = prep.train
    assert pool.acc is not None and pool.levels is not None
    rng = np.random.default_rng(3)
    idx = np.arange(pool.n_segments)
    mx = make_mixtures(pool, idx, rng)
    song = pool.segment_song
    assert (song[mx.acc_index] != song[mx.vocal_index]).all()
    assert mx.mix.shape == pool.mix.shape
    # The recorded gains are what the mixture holds: vocal-to-accompaniment ratio in range.
    ratio = pool.levels[idx, 1] + mx.vocal_gain_db - (pool.levels[mx.acc_index, 2] + mx.acc_gain_db)
    inside = (ratio >= -6.0 - 1e-6) & (ratio <= 6.0 + 1e-6)
    assert inside.mean() > 0.9  # the rest hit the +-30 dB gain clip (near-silent stems)
    again = make_mixtures(pool, idx, np.random.default_rng(3))
    assert torch.equal(again.mix, mx.mix) and (again.acc_gain_db == mx.acc_gain_db).all()
    gv, ga = draw_gains(np.random.default_rng(0), np.array([-20.0]), np.array([-10.0]))
    assert gv[0] == 0.0 and -6.0 <= (-20.0 + gv[0]) - (-10.0 + ga[0]) <= 6.0


# --- every loss x sampling lowers its loss ---------------------------------------------------


COMBOS = [(loss, sampling) for loss in ("mixed", "cross", "cross-sp", "infonce")
          for sampling in ("real", "artificial", "both")]


@pytest.mark.parametrize(("loss", "sampling"), COMBOS)
def test_each_loss_and_sampling_lowers_the_loss(toy: Path, tmp_path: Path, loss: str, sampling: str) -> None:
    cfg = _cfg(toy, tmp_path / "run", loss=loss, sampling=sampling, lr=0.05, seed=1)
    _assert_learns(cfg)


@pytest.mark.parametrize(("arch", "teacher", "pairs"), [("cnn", 1.0, "label"), ("ge2e", 0.0, "agnostic"),
                                                         ("ge2e", 1.0, "label")])
def test_ge2e_heads_teacher_and_agnostic_pairs_lower_the_loss(toy: Path, tmp_path: Path, arch: str,
                                                              teacher: float, pairs: str) -> None:
    cfg = _cfg(toy, tmp_path / "run", loss="infonce", sampling="both", arch=arch, teacher=teacher, pairs=pairs,
               head_hidden=32, lr=0.05, seed=1)
    _assert_learns(cfg)


def _assert_learns(cfg: TrainConfig, steps: int = 25) -> None:
    dev = torch.device("cpu")
    prep = prepare(cfg, emit=lambda e: None, device=dev)
    if cfg.arch == "ge2e":
        model = EncoderPair.ge2e_heads(hidden=cfg.head_hidden, seed=cfg.seed)
    else:
        model = EncoderPair.create(width=cfg.width, seed=cfg.seed)
    weights = cfg.weights()
    cache = prep.train_ge2e

    def fixed() -> float:
        # Train mode (batch statistics in batch norm), as the loss being minimised is.
        model.train()
        with torch.no_grad():
            return float(np.mean([float(batch_loss(model, prep.train, np.random.default_rng([9, k]), cfg, weights, dev,
                                                   cache=cache)[0]) for k in range(4)]))

    before = fixed()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, momentum=0.9)
    for k in range(steps):
        model.train()
        loss, _ = batch_loss(model, prep.train, np.random.default_rng([9, k % 4]), cfg, weights, dev, cache=cache)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = fixed()
    assert after < before, (before, after)


# --- label-agnostic training needs no labels ---------------------------------------------------


def test_label_agnostic_training_runs_on_a_folder_without_artist_tags(toy: Path, tmp_path: Path) -> None:
    plain = tmp_path / "untagged"
    for i, mix in enumerate(sorted(toy.glob("singer_*/song_*/mix.wav"))):
        (plain / f"d{i}").mkdir(parents=True)
        shutil.copy(mix, plain / f"d{i}" / f"take {i}.wav")  # no manifest, no tags
    with pytest.raises(TrainingError, match="no labelled songs"):
        train(_cfg(plain, tmp_path / "labelled", loss="cross-sp", vocals="separated", separator="tiny"))
    with pytest.raises(TrainingError, match="infonce"):
        train(_cfg(plain, tmp_path / "bad", loss="cross-sp", pairs="agnostic", vocals="separated", separator="tiny"))
    events: list[TrainEvent] = []
    res = train(_cfg(plain, tmp_path / "agnostic", loss="infonce", pairs="agnostic", sampling="both",
                     vocals="separated", separator="tiny", evaluate=True), emit=events.append)
    assert res.best_checkpoint is not None and res.best_checkpoint.is_file()
    split = next(e for e in events if isinstance(e, SplitEvent))
    assert split.songs == 12 and split.singers == 12  # each untagged song is its own pseudo-singer
    assert any(isinstance(e, WarningEvent) and "no evaluation" in e.message for e in events)
    EncoderPair.load(res.best_checkpoint)


def test_a_split_file_holds_out_the_singers_it_names(toy: Path, tmp_path: Path) -> None:
    import json

    singers = sorted({f"Singer {i:02d}" for i in range(6)})
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": singers[:3], "val": singers[3:5], "test": singers[5:]}))
    res = train(_cfg(toy, tmp_path / "run", split_file=str(split)))
    written = json.loads((tmp_path / "run" / "split.json").read_text())
    assert (written["train"], written["val"], written["test"]) == (singers[:3], singers[3:5], singers[5:])
    assert res.best_checkpoint is not None
    split.write_text(json.dumps({"train": singers[:3], "val": singers[2:5], "test": singers[5:]}))
    with pytest.raises(TrainingError, match="two parts"):
        train(_cfg(toy, tmp_path / "other", split_file=str(split)))
