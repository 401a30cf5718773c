"""Audio-query-based separation (core/separation/by_example.py, training/aqss_*.py, crossmix separate --query).

Tiny random-weight models where the weights do not matter; the shipped weights where they do.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from core.audio.decode import Audio
from core.errors import CrossmixError, ModelError, TrainingError
from core.separation.by_example import (
    BadQueryError,
    QSepConfig,
    QuerySeparator,
    kl_loss,
    latent_loss,
    losses,
    reconstruction_loss,
    sdr_loss,
    separate_with_query,
    si_sdr,
    slerp,
)

TINY = QSepConfig(width=4, z_dim=4, depth=3, query_channels=(4, 4, 4, 4, 4, 4), gru_hidden=8,
                  segment_frames=16, query_frames=32, name="tiny")
DATA = Path(__file__).parent / "data" / "aqss"


def tiny_model(seed: int = 0) -> QuerySeparator:
    torch.manual_seed(seed)
    return QuerySeparator(TINY).eval()


# --- model ------------------------------------------------------------------------------------


def test_shapes_and_conditioning() -> None:
    m = tiny_model()
    mag = torch.rand(3, 1, TINY.bins, 32)
    mu, logvar = m.encode(torch.rand(3, 1, TINY.bins, 20))  # any query length (the GRU reads it)
    assert mu.shape == logvar.shape == (3, TINY.z_dim)
    mask = m.mask(mag, mu)
    assert mask.shape == mag.shape
    assert float(mask.detach().min()) >= 0.0 and float(mask.detach().max()) <= 1.0
    # z enters twice: concatenated to the input channels, and through AdaIN in the decoder.
    assert m.separator.down[0][0].in_channels == 1 + TINY.z_dim
    assert len(m.separator.adain) == TINY.depth
    z1, z2 = torch.zeros(1, TINY.z_dim), torch.ones(1, TINY.z_dim)
    assert not torch.allclose(m.mask(mag[:1], z1), m.mask(mag[:1], z2))
    # AdaIN alone changes the output too (the concatenated copy of z zeroed out).
    with torch.no_grad():
        m.separator.down[0][0].weight[:, 1:] = 0
    assert not torch.allclose(m.mask(mag[:1], z1), m.mask(mag[:1], z2))
    # The query net is a 6-conv stack and a GRU.
    convs = [x for x in m.query_net.convs if isinstance(x, torch.nn.Conv2d)]
    assert len(convs) == 6 and isinstance(m.query_net.gru, torch.nn.GRU)


def test_adain_scales_and_shifts_the_normalised_input() -> None:
    from core.separation.by_example import AdaIN

    ada = AdaIN(2, 3)
    with torch.no_grad():
        ada.style.weight.zero_()
        ada.style.bias.copy_(torch.tensor([1.0, 0.0, 0.5, -2.0]))  # gains 1, 0; shifts 0.5, -2
    x = torch.randn(1, 2, 4, 5) * 3 + 7
    y = ada(x, torch.zeros(1, 3))
    norm = (x - x.mean(dim=(2, 3), keepdim=True)) / torch.sqrt(x.var(dim=(2, 3), unbiased=False, keepdim=True) + 1e-5)
    assert torch.allclose(y[0, 0], 2.0 * norm[0, 0] + 0.5, atol=1e-4)
    assert torch.allclose(y[0, 1], norm[0, 1] - 2.0, atol=1e-4)


def test_each_loss_against_a_hand_computed_case() -> None:
    est = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    tgt = torch.tensor([[0.0, 4.0], [3.0, 1.0]])
    assert float(reconstruction_loss(est, tgt)) == pytest.approx((1 + 2 + 0 + 1) / 4)
    mu = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    # row 0: 0.5 (1 + 1 - 1 - 0) + 0.5 (0 + 2 - 1 - ln 2); row 1: 0
    expected = (0.5 + 0.5 * (1.0 - math.log(2.0))) / 2
    assert float(kl_loss(mu, logvar)) == pytest.approx(expected, rel=1e-6)
    assert float(kl_loss(torch.zeros(4, 3), torch.zeros(4, 3))) == 0.0
    z = torch.tensor([[1.0, -1.0, 0.5]])
    assert float(latent_loss(z, torch.tensor([[0.0, 1.0, 0.5]]))) == pytest.approx(3.0 / 3)


def test_total_loss_combines_the_three_terms_with_their_weights() -> None:
    m = tiny_model().train()
    mag = torch.rand(2, 1, TINY.bins, 16)
    g = torch.Generator().manual_seed(1)
    out = losses(m, mag, mag * 0.5, mag, kl_weight=0.25, latent_weight=2.0, generator=g)
    parts = out.reconstruction + 0.25 * out.kl + 2.0 * out.latent
    assert float(out.total.detach()) == pytest.approx(float(parts.detach()), rel=1e-5)
    out.total.backward()
    assert m.query_net.head.weight.grad is not None and m.separator.out.weight.grad is not None


def test_sdr_loss_against_a_hand_computed_case() -> None:
    s = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]])
    e = torch.tensor([[0.5, 0.0, 0.0, 0.0], [0.0, 2.0, 0.2, 0.0]])
    # row 0: 10 log10(1 / 0.25) = 6.02 dB; row 1: 10 log10(4 / 0.04) = 20 dB
    assert float(sdr_loss(s, e)) == pytest.approx(-(10 * math.log10(4.0) + 20.0) / 2, rel=1e-4)
    # each example counts alike whatever its level
    assert float(sdr_loss(100 * s, 100 * e)) == pytest.approx(float(sdr_loss(s, e)), rel=1e-4)
    assert math.isfinite(float(sdr_loss(torch.zeros(1, 4), torch.zeros(1, 4))))


def test_the_waveform_loss_adds_the_separated_waveforms_sdr_with_its_weight() -> None:
    m = tiny_model().train()
    n = (TINY.segment_frames - 1) * TINY.hop
    rng = np.random.default_rng(3)
    target = torch.from_numpy((0.2 * rng.standard_normal((2, n))).astype(np.float32))
    mix = target + torch.from_numpy((0.2 * rng.standard_normal((2, n))).astype(np.float32))
    spec = m.stft(mix)
    mag, tmag = spec.abs()[:, None], m.stft(target).abs()[:, None]
    plain = losses(m, mag, tmag, tmag, kl_weight=0.1, latent_weight=0.1, generator=torch.Generator().manual_seed(1))
    out = losses(m, mag, tmag, tmag, kl_weight=0.1, latent_weight=0.1, generator=torch.Generator().manual_seed(1),
                 wave_weight=0.5, mix_spec=spec, target_wave=target)
    assert float(plain.wave) == 0.0
    # the term is the SDR of the mixture's STFT under the model's mask, back in the time domain
    # (the mixture's phase: the estimate the app plays), with the same sampled z
    with torch.no_grad():
        mu, logvar = m.encode(tmag)
        eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(1))
        mask = m.mask(mag, mu + eps * torch.exp(0.5 * logvar))
        expected = sdr_loss(target, m.istft(spec * mask[:, 0], n))
    assert float(out.wave.detach()) == pytest.approx(float(expected), rel=1e-4)
    assert float(out.total.detach()) == pytest.approx(float((plain.total + 0.5 * out.wave).detach()), rel=1e-5)
    out.total.backward()
    assert m.separator.out.weight.grad is not None
    with pytest.raises(ValueError, match="waveform"):
        losses(m, mag, tmag, tmag, kl_weight=0.1, latent_weight=0.1, wave_weight=0.5)


def test_slerp_endpoints_and_midpoint() -> None:
    a, b = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 2.0, 0.0])
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-6)
    assert torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    mid = slerp(a, b, 0.5)  # 90 degrees apart: sin(45)/sin(90) of each
    assert torch.allclose(mid, torch.tensor([math.sqrt(0.5), 2 * math.sqrt(0.5), 0.0]), atol=1e-6)
    assert torch.allclose(slerp(a, 3 * a, 0.5), 2 * a)  # parallel: linear


def test_save_load_round_trip_and_checksum(tmp_path: Path) -> None:
    m = tiny_model(3)
    m.class_latents.normal_()
    m.save(tmp_path / "tiny")
    back = QuerySeparator.load(tmp_path / "tiny.safetensors")
    mag = torch.rand(1, 1, TINY.bins, 16)
    z = torch.randn(1, TINY.z_dim)
    assert torch.equal(m.mask(mag, z), back.mask(mag, z))
    assert torch.equal(back.class_latent("drums"), m.class_latents[0])
    with pytest.raises(ModelError, match="Unknown source class"):
        back.class_latent("kazoo")
    data = bytearray((tmp_path / "tiny.safetensors").read_bytes())
    data[-1] ^= 1
    (tmp_path / "tiny.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum"):
        QuerySeparator.load(tmp_path / "tiny")


def test_tiny_model_overfits_one_mixture() -> None:
    """A few dozen steps on one mixture raise the separated source's SDR well above the start."""
    torch.manual_seed(0)
    sr = TINY.sr
    n = (TINY.segment_frames - 1) * TINY.hop
    t = np.arange(n) / sr
    target = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.15 * np.sin(2 * np.pi * 660 * t)).astype(np.float32)
    other = (0.3 * np.random.default_rng(0).standard_normal(n)).astype(np.float32)
    m = QuerySeparator(TINY)
    spec = m.stft(torch.from_numpy(target + other)[None])
    mix_mag, tgt_mag = spec.abs()[:, None], m.stft(torch.from_numpy(target)[None]).abs()[:, None]

    def score() -> float:
        m.eval()
        with torch.no_grad():
            z, _ = m.encode(tgt_mag)
            est = m.istft(spec * m.mask(mix_mag, z)[:, 0], n)[0].numpy()
        m.train()
        return si_sdr(target, est)

    before = score()
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(80):
        out = losses(m, mix_mag, tgt_mag, tgt_mag, kl_weight=1e-3, latent_weight=0.1)
        opt.zero_grad()
        out.total.backward()
        opt.step()
    after = score()
    assert after > before + 3.0, (before, after)


def test_song_outputs_keep_rate_channels_and_sum_to_the_song() -> None:
    m = tiny_model()
    m.class_latents.normal_()
    rng = np.random.default_rng(0)
    song = Audio((0.2 * rng.standard_normal((2, 44100 * 2))).astype(np.float32), 44100)
    res = separate_with_query(m, song, source_class="bass")
    assert res.source.samples.shape == song.samples.shape == res.rest.samples.shape
    assert res.source.sr == 44100
    assert np.allclose(res.source.samples + res.rest.samples, song.samples, atol=1e-6)
    query = Audio((0.2 * rng.standard_normal((1, 22050))).astype(np.float32), 22050)
    a = separate_with_query(m, song, query=query)
    b = separate_with_query(m, song, query=query, iterations=1)  # the re-query refinement runs
    assert a.source.samples.shape == b.source.samples.shape
    assert not np.allclose(a.source.samples, b.source.samples)
    with pytest.raises(BadQueryError, match="silent"):
        separate_with_query(m, song, query=Audio(np.zeros((1, 22050), np.float32), 22050))
    with pytest.raises(BadQueryError, match="long"):
        separate_with_query(m, song, query=Audio(query.samples[:, :2000], 22050))


def test_si_sdr_of_known_signals() -> None:
    s = np.sin(np.linspace(0, 40, 1000))
    assert si_sdr(s, 3.0 * s) > 100  # scale does not matter
    noise = np.cos(np.linspace(0, 40, 1000) * 7.3)
    noise -= s * np.dot(noise, s) / np.dot(s, s)  # orthogonal to s
    noise *= np.linalg.norm(s) / np.linalg.norm(noise) / 10.0  # 20 dB below
    assert si_sdr(s, s + noise) == pytest.approx(20.0, abs=1e-6)


# --- data ---------------------------------------------------------------------------------------


def _fake_vocal_corpus(root: Path, *, seconds: float = 4.0) -> Path:
    """A one-song 'crossmix corpus' folder: a real song plan (truth.json) and a hummed vocal."""
    from training.corpus_melody import draw_plan
    from training.corpus_singers import draw_singer

    plan = draw_plan(singer=draw_singer(seed=5, index=0), rng=np.random.default_rng(5), seconds=seconds)
    folder = root / "singer_000" / "song_00"
    folder.mkdir(parents=True)
    truth = plan.to_json()
    (folder / "truth.json").write_text(json.dumps(truth))
    sr = 44100
    t = np.arange(int(seconds * sr)) / sr
    vocal = np.zeros_like(t)
    for note in plan.notes:
        on = (t >= note.onset) & (t < note.onset + note.duration)
        vocal[on] = 0.2 * np.sin(2 * np.pi * 440 * 2 ** ((note.pitch - 69) / 12) * t[on])
    sf.write(folder / "vocals.flac", np.stack([vocal, vocal], axis=1), sr, subtype="PCM_24")
    songs = [{"singer": 0, "song": 0, "truth": "singer_000/song_00/truth.json",
              "vocals": "singer_000/song_00/vocals.flac"}]
    (root / "corpus.json").write_text(json.dumps({"songs": songs}))
    return root


def _one_song_multitracks(tmp_path: Path, *, validates: bool = False) -> Path:
    """``tmp_path/mt``: one generated multitrack song in ``train`` (and the same in ``val``)."""
    import shutil

    from training.aqss_data import generate_multitracks

    generate_multitracks(vocals_dir=_fake_vocal_corpus(tmp_path / "vocals"), out_dir=tmp_path / "mt", seed=3,
                         split="train", count=1)
    if validates:
        shutil.copytree(tmp_path / "mt" / "train", tmp_path / "mt" / "val")
    return tmp_path / "mt"


def _one_song(tmp_path: Path) -> Any:
    """That song, loaded (a ``training.aqss_data.Multitrack``)."""
    from training.aqss_data import load_multitrack, song_folder

    return load_multitrack(song_folder(_one_song_multitracks(tmp_path), "train", 0))


def test_multitrack_generator_is_deterministic_and_stems_sum_to_the_mixture(tmp_path: Path) -> None:
    from training.aqss_data import (
        HELD_OUT,
        PROGRAMS,
        STEMS,
        draw_mixture,
        generate_multitracks,
        load_multitrack,
        song_folder,
    )

    vocals = _fake_vocal_corpus(tmp_path / "vocals")
    for out in ("a", "b"):
        r = generate_multitracks(vocals_dir=vocals, out_dir=tmp_path / out, seed=3, split="train", count=1)
        assert r.written == 1
    again = generate_multitracks(vocals_dir=vocals, out_dir=tmp_path / "a", seed=3, split="train", count=1)
    assert again.written == 0 and again.skipped == 1  # resumes: a finished song is kept
    fa, fb = song_folder(tmp_path / "a", "train", 0), song_folder(tmp_path / "b", "train", 0)
    for name in (*STEMS, "mix"):
        assert (fa / f"{name}.flac").read_bytes() == (fb / f"{name}.flac").read_bytes(), name
    song = load_multitrack(fa)
    meta = song.meta
    assert meta["held_out_part"] is None
    for part, program in meta["programs"].items():
        assert program in PROGRAMS[part] and program not in HELD_OUT[part]
    mix = sf.read(str(fa / "mix.flac"), dtype="float64")[0]
    assert np.allclose(mix, sum(song.stems[s].astype(np.float64) for s in STEMS), atol=1e-5)
    # Every part is its own stem (all audible here), and they differ.
    assert all(float(np.abs(song.stems[s]).max()) > 1e-3 for s in STEMS)
    ex = draw_mixture(song, np.random.default_rng(0), samples=8000, query_samples=16000)
    assert ex.target_name not in ex.others and len(ex.others) >= 1
    assert ex.query.shape == (16000,) and ex.mix.shape == ex.target.shape == (8000,)
    others = ex.mix - ex.target
    assert float(np.abs(others).max()) > 0
    ex2 = draw_mixture(song, np.random.default_rng(0), samples=8000, query_samples=16000)
    assert np.array_equal(ex.mix, ex2.mix) and ex.others == ex2.others


def test_trainer_logs_typed_events_and_resumes(tmp_path: Path) -> None:
    from training.aqss_train import TrainConfig, train
    from training.events import (
        QSepEvent,
        QSepResumeEvent,
        QSepTrainEvent,
        QSepValEvent,
        parse_qsep_event,
    )

    _one_song_multitracks(tmp_path, validates=True)  # the one song validates too
    cfg = TrainConfig(batch_size=2, width=4, z_dim=4, minutes=0.03, checkpoint_minutes=0.01, val_examples=2,
                      class_queries=2, log_every=1)
    out = tmp_path / "run"
    events: list[QSepEvent] = []
    first = train(data_dir=tmp_path / "mt", out_dir=out, config=cfg, emit=events.append)
    logged = [parse_qsep_event(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert logged == events  # what the CLI prints is what log.jsonl keeps
    assert any(isinstance(e, QSepTrainEvent) for e in events) and isinstance(events[-1], QSepValEvent)
    assert events[-1].step == first["steps"] and (out / "best.safetensors").is_file()
    val = events[-1]
    assert isinstance(val, QSepValEvent) and val.by_class and set(val.by_class) <= {"drums", "bass", "vocals", "other"}
    # a log line written before the per-class figures existed still reads
    old_line = json.dumps({k: v for k, v in val.to_dict().items() if k != "by_class"})
    assert parse_qsep_event(old_line) == dataclasses.replace(val, by_class={})
    more: list[QSepEvent] = []
    again = train(data_dir=tmp_path / "mt", out_dir=out, config=dataclasses.replace(cfg, minutes=0.06),
                  resume=True, emit=more.append)
    assert isinstance(more[0], QSepResumeEvent) and more[0].step == first["steps"]
    assert again["steps"] > first["steps"] and not any(isinstance(e, QSepResumeEvent) for e in more[1:])


def test_the_first_losses_logged_after_a_resume_are_means_of_the_batches_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run resumed between two log lines logs the mean of the batches since the resume (it
    divided by ``log_every``: the curve dipped to a fraction at every resume)."""
    from training import aqss_train
    from training.events import QSepTrainEvent

    _one_song_multitracks(tmp_path, validates=True)

    def constant_step(self: aqss_train._Run, frac: float) -> list[float]:
        self.step += 1
        return [1.0, 0.5, 2.0, 0.25, -3.0]

    monkeypatch.setattr(aqss_train._Run, "train_step", constant_step)
    cfg = aqss_train.TrainConfig(batch_size=2, width=4, z_dim=4, minutes=0.002, checkpoint_minutes=1.0,
                                 val_examples=2, class_queries=2, log_every=4)
    out = tmp_path / "run"
    aqss_train.train(data_dir=tmp_path / "mt", out_dir=out, config=cfg)
    state = torch.load(out / "state.pt", weights_only=False)
    state["step"] = 4 * 1000 + 1  # stopped one batch after a log line
    torch.save(state, out / "state.pt")
    events: list[object] = []
    aqss_train.train(data_dir=tmp_path / "mt", out_dir=out, config=dataclasses.replace(cfg, minutes=0.004),
                     resume=True, emit=events.append)
    logged = [e for e in events if isinstance(e, QSepTrainEvent)]
    assert logged and logged[0].step == 4004
    assert all((e.loss, e.rec, e.kl, e.latent, e.wave) == (1.0, 0.5, 2.0, 0.25, -3.0) for e in logged)


def test_full_mixtures_take_every_other_stem_and_the_default_draws_as_before(tmp_path: Path) -> None:
    from training.aqss_data import draw_mixture

    song = _one_song(tmp_path)
    full = [draw_mixture(song, np.random.default_rng(i), samples=8000, query_samples=16000, full_prob=1.0)
            for i in range(6)]
    for ex in full:
        assert sorted((ex.target_name, *ex.others)) == sorted(song.present())
    subsets = [draw_mixture(song, np.random.default_rng(i), samples=8000, query_samples=16000)
               for i in range(12)]
    assert any(len(ex.others) < len(song.present()) - 1 for ex in subsets)
    # full_prob=0 draws no extra number: a fixed validation set is the one drawn before.
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    a = draw_mixture(song, rng_a, samples=8000, query_samples=16000)
    b = draw_mixture(song, rng_b, samples=8000, query_samples=16000, full_prob=0.0)
    assert np.array_equal(a.mix, b.mix) and rng_a.random() == rng_b.random()


def test_class_balanced_targets_draw_each_class_alike_and_the_default_draws_as_before(tmp_path: Path) -> None:
    from collections import Counter

    from training.aqss_data import CLASS_OF, draw_mixture

    song = _one_song(tmp_path)
    classes = {CLASS_OF[s] for s in song.present()}
    assert len(classes) == 4 and len(song.present()) == 6  # 3 "other" stems: unbalanced by stem

    def shares(balanced: bool) -> dict[str, float]:
        rng = np.random.default_rng(11)
        drawn = Counter(CLASS_OF[draw_mixture(song, rng, samples=8000, query_samples=16000,
                                              balance_classes=balanced).target_name] for _ in range(800))
        return {c: n / 800 for c, n in drawn.items()}

    by_stem, by_class = shares(False), shares(True)
    # Not exact shares: a target silent in its excerpt is drawn again (this fake vocal often is).
    assert by_stem["other"] > 0.45 and by_class["other"] < 0.4, (by_stem, by_class)
    assert all(by_class[c] > 1.25 * by_stem[c] for c in ("drums", "bass", "vocals")), (by_stem, by_class)
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    a = draw_mixture(song, rng_a, samples=8000, query_samples=16000)
    b = draw_mixture(song, rng_b, samples=8000, query_samples=16000, balance_classes=False)
    assert np.array_equal(a.mix, b.mix) and rng_a.random() == rng_b.random()


def test_warm_start_copies_every_weight_into_a_model_with_another_stft() -> None:
    from training.aqss_train import warm_start

    small = tiny_model(seed=1)
    big = QuerySeparator(dataclasses.replace(TINY, n_fft=2048, hop=512)).eval()
    assert big.config.bins == 4 * small.config.bins
    assert warm_start(big, small) == []
    for name, value in small.separator.state_dict().items():
        assert torch.equal(big.separator.state_dict()[name], value), name
    # The GRU's input weights are spread over the 4 bands that cover each old band: a query
    # whose new bands repeat the old ones gives the GRU the same input projection.
    c = TINY.query_channels[-1]
    f_old = small.query_net.gru.weight_ih_l0.shape[1] // c
    h_old = torch.randn(c, f_old)
    h_new = h_old.repeat_interleave(4, dim=1)
    w_old, w_new = small.query_net.gru.weight_ih_l0, big.query_net.gru.weight_ih_l0
    assert torch.allclose(w_new @ h_new.reshape(-1), w_old @ h_old.reshape(-1), atol=1e-5)
    # A wider model shares nothing that does not fit, and says which.
    wide = QuerySeparator(dataclasses.replace(TINY, width=6))
    assert "separator.down.0.0.weight" in warm_start(wide, small)


def test_separator_takes_any_spectrogram_size() -> None:
    m = tiny_model()
    z = torch.zeros(2, TINY.z_dim)
    for frames in (16, 21, 33):
        mag = torch.rand(2, 1, TINY.bins - 3, frames)
        assert m.mask(mag, z).shape == mag.shape
    # Padded frames are cropped, not mixed in: the mask of a padded input's first frames is
    # the mask computed on exactly those frames padded the same way.
    mag = torch.rand(1, 1, TINY.bins, 21)
    same = m.mask(torch.nn.functional.pad(mag, (0, 3)), z[:1])[..., :21]
    assert torch.allclose(m.mask(mag, z[:1]), same, atol=1e-6)


def test_a_run_with_another_stft_trains_from_warm_weights_and_old_runs_resume(tmp_path: Path) -> None:
    from training.aqss_train import TrainConfig, train

    _one_song_multitracks(tmp_path, validates=True)
    base = TrainConfig(batch_size=2, width=4, z_dim=4, minutes=0.02, checkpoint_minutes=1.0, val_examples=2,
                       class_queries=2, log_every=1)
    train(data_dir=tmp_path / "mt", out_dir=tmp_path / "old", config=base)
    # A run saved before the STFT settings existed resumes (they default to what it used).
    state = torch.load(tmp_path / "old" / "state.pt", weights_only=False)
    for key in ("n_fft", "hop", "segment_frames", "query_frames", "full_mix_prob", "class_balanced", "wave_weight"):
        del state["config"][key]
    torch.save(state, tmp_path / "old" / "state.pt")
    train(data_dir=tmp_path / "mt", out_dir=tmp_path / "old", config=dataclasses.replace(base, minutes=0.04),
          resume=True)
    new = dataclasses.replace(base, n_fft=1024, hop=512, segment_frames=32, query_frames=64, full_mix_prob=0.5,
                              wave_weight=0.02, init=str(tmp_path / "old" / "best.safetensors"))
    # With no time to train, the new run's model is the warm start: the old U-Net, unchanged.
    r0 = train(data_dir=tmp_path / "mt", out_dir=tmp_path / "new0", config=dataclasses.replace(new, minutes=0.0))
    before, after = QuerySeparator.load(tmp_path / "old" / "best.safetensors"), QuerySeparator.load(r0["best_path"])
    for name, value in before.separator.state_dict().items():
        assert torch.equal(after.separator.state_dict()[name], value), name
    r = train(data_dir=tmp_path / "mt", out_dir=tmp_path / "new", config=new)
    # resumed without naming the weights it started from (they are in state.pt by then)
    train(data_dir=tmp_path / "mt", out_dir=tmp_path / "new", config=dataclasses.replace(new, init="", minutes=0.03),
          resume=True)
    for changed in ({"n_fft": 2048}, {"wave_weight": 0.0}):  # but not with another STFT or loss
        with pytest.raises(TrainingError, match="other settings"):
            train(data_dir=tmp_path / "mt", out_dir=tmp_path / "new", resume=True,
                  config=dataclasses.replace(new, minutes=0.04, **changed))
    # the waveform loss was trained with and logged
    from training.events import QSepTrainEvent, parse_qsep_event
    logged = [parse_qsep_event(line) for line in (tmp_path / "new" / "log.jsonl").read_text().splitlines()]
    steps = [e for e in logged if isinstance(e, QSepTrainEvent)]
    assert steps and all(e.wave != 0.0 for e in steps)
    cfg = QuerySeparator.load(r["best_path"]).config
    assert (cfg.n_fft, cfg.hop, cfg.segment_frames, cfg.query_frames) == (1024, 512, 32, 64)
    # The weights it started from stay on record after the resume that did not name them,
    # whether or not that resume saved a new best model.
    assert cfg.training["init"] == new.init and cfg.training["full_mix_prob"] == 0.5
    assert cfg.training["wave_weight"] == 0.02
    assert torch.load(tmp_path / "new" / "state.pt", weights_only=False)["config"]["init"] == new.init


def test_zeroshot_split_uses_a_held_out_program() -> None:
    from training.aqss_data import HELD_OUT, draw_programs, song_rng

    for i in range(20):
        programs, held = draw_programs(song_rng(1, "zeroshot", i, "programs"), zeroshot=True)
        assert held is not None and programs[held] in HELD_OUT[held]
        programs, held = draw_programs(song_rng(1, "train", i, "programs"), zeroshot=False)
        assert held is None and all(programs[p] not in HELD_OUT[p] for p in programs)


# --- CLI ---------------------------------------------------------------------------------------


def test_query_parsing() -> None:
    from cli.query_separate import parse_query

    assert parse_query("a.wav").path == Path("a.wav")
    q = parse_query("dir/a.wav@12.5-18")
    assert (q.path, q.start, q.end) == (Path("dir/a.wav"), 12.5, 18.0)
    q = parse_query("a.wav@1:05-1:12")
    assert (q.start, q.end) == (65.0, 72.0)
    assert parse_query("a.wav@3-").end is None and parse_query("a.wav@-3").start == 0.0
    for bad in ("a.wav@x-y", "a.wav@-", "a.wav@5-2", "@1-2"):
        with pytest.raises(CrossmixError):
            parse_query(bad)


@pytest.fixture
def tiny_weights(tmp_path: Path) -> Path:
    m = tiny_model(1)
    m.class_latents.normal_()
    return m.save(tmp_path / "tiny-qsep")


def test_the_mask_power_sharpens_the_mask_at_inference_only() -> None:
    m = tiny_model()
    mag = torch.rand(2, 1, TINY.bins, TINY.segment_frames)
    z = torch.randn(2, TINY.z_dim)
    plain = m.separate_magnitude(mag, z)
    m.config.mask_power = 2.0
    assert torch.allclose(m.separate_magnitude(mag, z), plain.pow(2.0))
    assert torch.allclose(m.mask(mag, z), plain)  # training sees the network's own mask
    assert "mask_power" not in m.config.architecture()
    # a model saved before the setting existed loads with power 1
    assert QSepConfig.from_dict({k: v for k, v in TINY.to_dict().items() if k != "mask_power"}).mask_power == 1.0


def test_calibrate_keeps_the_mask_power_with_the_best_validation_figures(
        tmp_path: Path, tiny_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli import main

    mt = _one_song_multitracks(tmp_path, validates=True)
    out = tmp_path / "calibrated"
    assert main(["calibrate-qsep", "--model", str(tiny_weights), "--data", str(mt), "-o", str(out),
                 "--powers", "1,3", "--class-queries", "3"]) == 0
    assert "mask power 3:" in capsys.readouterr().out
    before, after = QuerySeparator.load(tiny_weights), QuerySeparator.load(out.with_suffix(".safetensors"))
    cal = after.config.training["calibration"]
    assert cal["split"] == "val" and cal["class_queries"] == 3 and set(cal["figures"]) == {"1", "3"}
    figs = cal["figures"]
    assert set(figs["1"]) == {"drums_gt", "drums_class", "bass_gt", "bass_class", "vocals_gt", "vocals_class", "mean"}
    assert figs["1"] != figs["3"]  # the power changes what is separated
    assert after.config.mask_power == float(max(figs, key=lambda p: figs[p]["mean"]))
    # new class latents from training queries; the networks are the same
    assert not torch.equal(after.class_latents, before.class_latents)
    for name, value in before.separator.state_dict().items():
        assert torch.equal(after.separator.state_dict()[name], value), name
    assert main(["calibrate-qsep", "--model", str(tiny_weights), "--data", str(mt), "-o", str(out),
                 "--powers", "1,sharp"]) == 1
    assert "--powers takes numbers" in capsys.readouterr().err
    for bad in ("0", "nan", "-1"):
        assert main(["calibrate-qsep", "--model", str(tiny_weights), "--data", str(mt), "-o", str(out),
                     "--powers", bad]) == 1
        assert "positive" in capsys.readouterr().err
    # a folder without a validation split says what to run
    import shutil
    shutil.rmtree(mt / "val")
    assert main(["calibrate-qsep", "--model", str(tiny_weights), "--data", str(mt), "-o", str(out)]) == 1
    assert "no multitracks; generate them with 'crossmix multitracks --split val" in capsys.readouterr().err


def _song(tmp_path: Path, seconds: float = 3.0) -> Path:
    rng = np.random.default_rng(2)
    x = (0.2 * rng.standard_normal((int(44100 * seconds), 2))).astype(np.float32)
    path = tmp_path / "song.wav"
    sf.write(path, x, 44100)
    return path


def test_cli_remove_and_keep_write_what_they_say(tmp_path: Path, tiny_weights: Path) -> None:
    from cli import main

    song = _song(tmp_path)
    out = tmp_path / "out"
    assert main(["separate", str(song), "--class", "drums", "--qsep-model", str(tiny_weights),
                 "-o", str(out), "--device", "cpu"]) == 0
    src, _ = sf.read(out / "song_drums.wav", dtype="float32")
    rest, _ = sf.read(out / "song_without_drums.wav", dtype="float32")
    x, _ = sf.read(song, dtype="float32")
    assert src.shape == rest.shape == x.shape
    assert np.allclose(src + rest, x, atol=1e-5)
    assert main(["separate", str(song), "--query", f"{song}@0.5-2", "--remove", "--qsep-model",
                 str(tiny_weights), "-o", str(tmp_path / "o2"), "--device", "cpu"]) == 0
    assert [p.name for p in (tmp_path / "o2").iterdir()] == ["song_without_query.wav"]


def test_cli_errors_for_bad_queries(tmp_path: Path, tiny_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli import main

    song = _song(tmp_path)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros((44100, 2), np.float32), 44100)
    short = tmp_path / "short.wav"
    sf.write(short, (0.3 * np.random.default_rng(0).standard_normal((4410, 2))).astype(np.float32), 44100)
    text = tmp_path / "notes.wav"
    text.write_text("these are my notes, not audio\n" * 20)
    base = ["separate", str(song), "--qsep-model", str(tiny_weights), "-o", str(tmp_path / "o"), "--device", "cpu"]
    cases = {
        str(silent): "silent",
        str(short): "0.10 s long",
        str(text): "not",
        f"{song}@1-0.5": "before it starts",
        f"{song}@9-12": "only 3.00 s long",
        f"{song}@0-0.2": "0.20 s long",
        str(tmp_path / "missing.wav"): "missing.wav",
    }
    for query, words in cases.items():
        assert main([*base, "--query", query]) == 1, query
        err = capsys.readouterr().err
        assert "Traceback" not in err and words in err, (query, err)
        assert err.startswith("crossmix: error: ")
    assert main(["separate", str(song), "--keep", "-o", str(tmp_path / "o")]) == 1
    assert "--keep and --remove need --query" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# --- the shipped weights ---------------------------------------------------------------------


def test_shipped_weights_separate_a_held_out_clip_better_than_the_mixture() -> None:
    """A held-out test mixture (test split: singers and songs never used in training or
    validation): the shipped model, queried with another stretch of the same source, beats the
    unprocessed mixture by a margin."""
    from core.registry import load_query_separator

    model = load_query_separator("shipped", device=torch.device("cpu"))
    meta = json.loads((DATA / "clip.json").read_text())
    mix, sr = sf.read(DATA / "mix.flac", dtype="float32")
    target, _ = sf.read(DATA / "target.flac", dtype="float32")
    query, _ = sf.read(DATA / "query.flac", dtype="float32")
    assert sr == model.config.sr and meta["split"] == "test"
    res = separate_with_query(model, Audio(mix[None], sr), query=Audio(query[None], sr))
    gain = si_sdr(target, res.source.samples[0]) - si_sdr(target, mix)
    assert gain > 2.0, gain


def _bench_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_qsep", Path(__file__).parents[1] / "bench" / "query_separation.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_bench_curves_drop_what_a_stopped_run_wrote_after_its_last_checkpoint(tmp_path: Path) -> None:
    from training.events import QSepResumeEvent, QSepTrainEvent, QSepValEvent

    def tr(step: int, t: float) -> str:
        return QSepTrainEvent(step=step, elapsed_s=t, loss=0.1, rec=0.1, kl=1.0, latent=0.1, lr=1e-3,
                              wave=-6.0).to_json()

    lines = [tr(10, 1.0), QSepValEvent(step=10, elapsed_s=1.5, val_sisdri_mean=3.0, val_sisdri_median=3.0,
                                       by_class={"bass": 2.0}).to_json(),
             tr(20, 2.0),  # written after the checkpoint at step 10, then the run was stopped
             QSepResumeEvent(step=10, elapsed_s=1.5).to_json(), tr(20, 2.1), tr(30, 3.0)]
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(lines) + "\n")
    bench = _bench_module()
    train, val = bench.read_log(log)
    assert [(r["step"], r["elapsed_s"]) for r in train] == [(10, 1.0), (20, 2.1), (30, 3.0)]
    assert [r["step"] for r in val] == [10]
    bench.plot_curves(log, tmp_path / "curves.png")  # three panels with the waveform loss
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_bench_oracle_is_the_ideal_ratio_mask_ceiling(tmp_path: Path) -> None:
    """``bench/query_separation.py --oracle``: a perfect magnitude mask separates two tones far
    apart almost exactly, and the table covers every class of a generated multitrack."""
    from training.aqss_data import generate_multitracks

    bench = _bench_module()
    t = np.arange(16000) / 16000.0
    low, high = np.sin(2 * np.pi * 110 * t), 0.5 * np.sin(2 * np.pi * 3000 * t)
    est = bench.ideal_ratio_mask_estimate(low + high, low, n_fft=2048, hop=512)
    assert si_sdr(low[2048:-2048], est[2048:-2048]) > 30.0
    assert si_sdr(low, low + high) < 7.0
    vocals = _fake_vocal_corpus(tmp_path / "vocals")
    generate_multitracks(vocals_dir=vocals, out_dir=tmp_path / "mt", seed=3, split="train", count=1)
    (tmp_path / "mt" / "train").rename(tmp_path / "mt" / "val")
    out = tmp_path / "oracle.json"
    assert bench.main(["--data", str(tmp_path / "mt"), "--split", "val", "--oracle", "512/256,2048/512",
                       "--json", str(out)]) == 0
    table = json.loads(out.read_text())["oracle_median_sdr"]
    assert set(table) == {"512/256", "2048/512"}
    assert all(set(row) == {"drums", "bass", "vocals", "other"} for row in table.values())
    assert all(math.isfinite(v) for row in table.values() for v in row.values())
