"""Encoders: shapes, the paper's architecture, weight files, embeddings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.audio.decode import Audio
from core.embedding.encoders import EncoderPair, load_default_encoders
from core.embedding.features import N_MELS, SEGMENT_FRAMES
from core.embedding.song import SongEmbedding, combine, embed_song
from core.errors import CrossmixError, ModelError


def test_paper_backbone_shape_and_layers() -> None:
    pair = EncoderPair.create(width=1.0)
    convs = [m for m in pair.f_m.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 128, 128, 128, 128, 128, 256]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in pair.f_m.modules()) == 8
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in pair.f_m.modules()) == 7
    x = torch.randn(2, N_MELS, SEGMENT_FRAMES)
    with torch.no_grad():
        assert pair.f_m(x).shape == (2, 256) and pair.f_v(x).shape == (2, 256)
    # separate weights for the two domains
    v_first = next(m for m in pair.f_v.modules() if isinstance(m, torch.nn.Conv2d))
    assert v_first.weight is not convs[0].weight
    assert not torch.equal(v_first.weight, convs[0].weight)


def test_width_scales_filters_not_output() -> None:
    pair = EncoderPair.create(width=0.25)
    convs = [m for m in pair.f_v.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 32, 32, 32, 32, 32, 256]
    tiny = EncoderPair.tiny()
    with torch.no_grad():
        assert tiny.f_v(torch.randn(3, N_MELS, SEGMENT_FRAMES)).shape == (3, tiny.dim)


def test_save_load_identical(tmp_path) -> None:
    pair = EncoderPair.tiny(seed=3)
    x = torch.randn(4, N_MELS, SEGMENT_FRAMES)
    path = pair.save(tmp_path / "model")
    assert path.name == "model.safetensors" and (tmp_path / "model.json").is_file()
    doc = json.loads((tmp_path / "model.json").read_text())
    assert doc["model_id"] == pair.model_id and len(doc["sha256"]) == 64
    back = EncoderPair.load(tmp_path / "model.json")
    assert back.model_id == pair.model_id
    with torch.no_grad():
        assert torch.equal(back.f_m(x), pair.f_m(x)) and torch.equal(back.f_v(x), pair.f_v(x))
    assert EncoderPair.tiny(seed=4).model_id != pair.model_id
    assert EncoderPair.tiny(seed=3).model_id == pair.model_id


def test_load_rejects_corrupt_and_missing(tmp_path) -> None:
    path = EncoderPair.tiny().save(tmp_path / "m.safetensors")
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum"):
        EncoderPair.load(path)
    with pytest.raises(ModelError, match="not found"):
        EncoderPair.load(tmp_path / "nothing.safetensors")


def test_default_encoders_missing_is_a_clear_error(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr("core.embedding.encoders.assets_dir", lambda: tmp_path)
    with pytest.raises(ModelError, match="crossmix train"):
        load_default_encoders()


def test_embed_song_spaces(rng: np.random.Generator) -> None:
    sr = 22050
    t = np.arange(sr * 10) / sr
    voc = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    acc = (0.1 * rng.standard_normal(t.size)).astype(np.float32)
    mix = Audio(np.stack([voc + acc] * 2), sr)
    emb = embed_song(mix=mix, vocals=Audio(np.stack([voc] * 2), sr), encoders=EncoderPair.tiny())
    assert isinstance(emb, SongEmbedding)
    assert emb.M.shape == (256,) and emb.MV is not None and emb.MV.shape == (512,)
    for v in (emb.M, emb.V, emb.MplusV, emb.MV):
        assert v is not None and v.dtype == np.float32
        assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
    assert emb.n_segments == 3 and emb.vocal_found
    np.testing.assert_allclose(emb.space("[M,V]")[:256] * np.sqrt(2), emb.M, atol=1e-6)
    only = embed_song(mix=mix, vocals=None, encoders=EncoderPair.tiny())
    assert only.V is None and only.MV is None
    with pytest.raises(CrossmixError):
        only.space("V")


def test_combine_known_vectors() -> None:
    m = np.array([3.0, 4.0], dtype=np.float32)
    v = np.array([0.0, 2.0], dtype=np.float32)
    M, V, mpv, mv = combine(m, v)
    np.testing.assert_allclose(M, [0.6, 0.8], atol=1e-6)
    np.testing.assert_allclose(V, [0.0, 1.0], atol=1e-6)
    s = np.array([0.6, 1.8]) / np.linalg.norm([0.6, 1.8])
    np.testing.assert_allclose(mpv, s, atol=1e-6)
    np.testing.assert_allclose(mv, np.array([0.6, 0.8, 0.0, 1.0]) / np.sqrt(2), atol=1e-6)
