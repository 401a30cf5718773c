"""The GE2E backbone (resemblyzer's weights): the same numbers as resemblyzer, peer and heads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.audio.decode import Audio
from core.embedding import ge2e
from core.embedding.encoders import EncoderPair
from core.embedding.song import embed_song
from core.errors import ModelError
from core.registry import load_encoders as resolve_encoders


def _voice(seconds: float, f0: float, seed: int) -> np.ndarray:
    """A crude voiced sound: harmonics of a vibrato f0 with a formant-like tilt, in noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * ge2e.SR)) / ge2e.SR
    f = f0 * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))
    ph = 2 * np.pi * np.cumsum(f) / ge2e.SR
    x = sum(np.sin(k * ph) / k ** rng.uniform(0.8, 1.6) for k in range(1, 20))
    return (0.1 * x / np.abs(x).max() + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def test_backbone_gives_resemblyzers_own_embedding() -> None:
    resemblyzer = pytest.importorskip("resemblyzer")
    from resemblyzer import audio as ra

    wav = _voice(1.6, 180.0, 0)
    wav = wav * np.float32(10 ** (ge2e.TARGET_DBFS / 20) / np.sqrt(np.mean(wav.astype(np.float64) ** 2)))
    ref_mel = ra.wav_to_mel_spectrogram(wav)[:ge2e.PARTIAL_FRAMES]
    enc = resemblyzer.VoiceEncoder(device="cpu", verbose=False)
    with torch.no_grad():
        ref = enc(torch.from_numpy(ref_mel[None])).numpy()[0]
        our_mel = ge2e.segment_mels(wav, np.array([0.0]), seconds=1.6)[0].T[:ge2e.PARTIAL_FRAMES]
        net = ge2e.GE2E.pretrained()
        ours = net.embed_hidden(net.hidden(our_mel[None])).numpy()[0]
    np.testing.assert_allclose(our_mel.numpy(), ref_mel, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_peer_pair_embeds_songs_and_tells_voices_apart() -> None:
    peer = resolve_encoders("resemblyzer")
    assert peer.frontend == "ge2e" and peer.config.arch == "ge2e" and peer.config.head_hidden == 0
    sr = ge2e.SR
    noise = np.random.default_rng(1).standard_normal(8 * sr).astype(np.float32) * 0.02

    def song(f0: float, seed: int) -> tuple[Audio, Audio]:
        v = _voice(8.0, f0, seed)
        return Audio((v + noise)[None], sr), Audio(v[None], sr)

    a1, a2, b = song(110.0, 2), song(112.0, 2), song(260.0, 7)
    e = [embed_song(mix=m, vocals=v, encoders=peer) for m, v in (a1, a2, b)]
    assert all(x.V is not None and abs(float(np.linalg.norm(x.V)) - 1) < 1e-5 for x in e)
    assert float(e[0].V @ e[1].V) > float(e[0].V @ e[2].V)
    assert e[0].model_id == EncoderPair.resemblyzer().model_id  # deterministic identity


def test_untrained_heads_are_the_peer_and_round_trip(tmp_path: Path) -> None:
    heads = EncoderPair.ge2e_heads(hidden=16, seed=3)
    peer = EncoderPair.resemblyzer()
    x = ge2e.segment_mels(_voice(3.0, 150.0, 4), np.array([0.0]), seconds=2.97)
    with torch.no_grad():
        torch.testing.assert_close(heads.embed_vocal(x), peer.embed_vocal(x))
        for p in heads.f_m.parameters():
            p.add_(0.01)  # a trained-looking head
        out = heads.embed_mix(x)
    w = heads.save(tmp_path / "h")
    assert w.stat().st_size < 200_000  # the 17 MB backbone is not copied into the file
    again = EncoderPair.load(w)
    assert again.model_id == heads.model_id and again.config.backbone_sha256 == ge2e.backbone_sha256()
    with torch.no_grad():
        torch.testing.assert_close(again.embed_mix(x), out)


def test_head_scale_interpolates_between_the_peer_and_the_trained_heads(tmp_path: Path) -> None:
    """``head_scale`` weighs the heads' learned correction: 0 is the backbone alone, 1 the heads
    as trained (and the same model id as before the option existed), and it survives saving."""
    from safetensors.torch import load_file

    from core.embedding.encoders import EncoderConfig

    heads = EncoderPair.ge2e_heads(hidden=16, seed=3)
    with torch.no_grad():
        for p in heads.f_v.parameters():
            p.add_(0.02)
    w = heads.save(tmp_path / "h")
    x = ge2e.segment_mels(_voice(3.0, 150.0, 4), np.array([0.0]), seconds=2.97)

    def scaled(a: float) -> EncoderPair:
        pair = EncoderPair(EncoderConfig.from_dict({**heads.config.to_dict(), "head_scale": a}))
        pair.load_state_dict(load_file(str(w)))
        return pair.eval()

    with torch.no_grad():
        peer, full = EncoderPair.resemblyzer().embed_vocal(x), heads.embed_vocal(x)
        torch.testing.assert_close(scaled(0.0).embed_vocal(x), peer)
        torch.testing.assert_close(scaled(0.5).embed_vocal(x), 0.5 * (peer + full))
        torch.testing.assert_close(scaled(1.0).embed_vocal(x), full)
    assert scaled(1.0).model_id == heads.model_id != scaled(1.5).model_id
    again = EncoderPair.load(scaled(1.5).save(tmp_path / "s"))
    assert again.config.head_scale == 1.5 and again.model_id == scaled(1.5).model_id


def test_missing_resemblyzer_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ge2e.importlib.util, "find_spec", lambda name: None)
    ge2e._state_and_sha.cache_clear()
    try:
        with pytest.raises(ModelError, match="resemblyzer package is not installed"):
            resolve_encoders("resemblyzer")
    finally:
        monkeypatch.undo()
        ge2e._state_and_sha.cache_clear()


def test_heads_trained_on_other_backbone_weights_are_refused(tmp_path: Path) -> None:
    import json

    heads = EncoderPair.ge2e_heads(hidden=8)
    w = heads.save(tmp_path / "h")
    meta = w.with_suffix(".json")
    doc = json.loads(meta.read_text())
    doc["config"]["backbone_sha256"] = "0" * 64
    meta.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="another version of resemblyzer"):
        EncoderPair.load(w)
