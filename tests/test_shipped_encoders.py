"""The shipped encoders in assets/ (the default CROSS-GE2E and the paper's CROSS-SP): present,
intact (pinned sha256), usable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.audio.decode import Audio
from core.embedding.encoders import EncoderPair, default_encoders_path, load_default_encoders
from core.embedding.song import embed_song
from core.errors import ModelError

#: sha256 of the shipped weights (docs/results.md names them too). Retraining a shipped model
#: means updating its pin on purpose.
DEFAULT_SHA256 = "4837d9d72338ea86e6cdb625ca208713189bb28d556acf3c852cc90e974a8064"  # cross-ge2e
CROSS_SP_SHA256 = "a271d22ba981a2bf7211afccabd684c1aba0cc53650d5dbc41bb4862af8d6d21"


def test_shipped_weights_match_their_pins_and_configs() -> None:
    import hashlib

    from core.paths import assets_dir

    weights = default_encoders_path()
    assert weights.name == "cross-ge2e.safetensors"
    doc = json.loads(weights.with_suffix(".json").read_text())
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == DEFAULT_SHA256 == doc["sha256"]
    cfg = doc["config"]
    assert cfg["arch"] == "ge2e" and cfg["training"]["config"]["loss"] == "infonce"
    old = assets_dir() / "encoders" / "cross-sp.safetensors"
    doc = json.loads(old.with_suffix(".json").read_text())
    assert hashlib.sha256(old.read_bytes()).hexdigest() == CROSS_SP_SHA256 == doc["sha256"]
    assert doc["config"]["training"]["config"]["loss"] == "cross-sp"
    assert doc["config"]["training"]["config"]["lambdas"] == [0.25, 0.25, 0.25, 0.25]


def test_shipped_quality_covers_the_default_the_paper_model_and_the_peer() -> None:
    from core.embedding.quality import quality_for_choice

    for choice, name in (("", "CROSS-GE2E"), ("cross-sp", "CROSS-SP"), ("resemblyzer", "resemblyzer")):
        q = quality_for_choice(choice)
        assert q is not None and q.name.startswith(name), choice
        assert set(q.spaces) == {"vocal->mix", "mix->mix", "vocal->vocal", "[M,V]"}
        assert "104 unseen singers" in q.protocol


def test_shipped_encoders_load_and_embed(rng: np.random.Generator) -> None:
    pair = load_default_encoders()
    assert not pair.training
    t = np.arange(44100 * 8) / 44100
    voice = (0.2 * np.sin(2 * np.pi * 220 * t * (1 + 0.01 * np.sin(2 * np.pi * 5 * t)))).astype(np.float32)
    band = (0.05 * rng.standard_normal(t.size)).astype(np.float32)
    mix = Audio(np.stack([voice + band, voice + band]), 44100)
    emb = embed_song(mix=mix, vocals=Audio(np.stack([voice, voice]), 44100), encoders=pair)
    for name, dim in (("M", 256), ("V", 256), ("MplusV", 256), ("MV", 512)):
        vec = getattr(emb, name)
        assert vec.shape == (dim,)
        assert np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-5)
    # a trained pair is not a constant map: different inputs give different vocal embeddings
    other = embed_song(mix=mix, vocals=Audio(np.stack([band, band]) * 4, 44100), encoders=pair)
    assert float(emb.V @ other.V) < 0.999


def test_a_tampered_copy_is_refused(tmp_path: Path) -> None:
    src = default_encoders_path()
    dst = tmp_path / "copy.safetensors"
    shutil.copy(src, dst)
    shutil.copy(src.with_suffix(".json"), tmp_path / "copy.json")
    assert EncoderPair.load(dst).model_id == load_default_encoders().model_id
    data = bytearray(dst.read_bytes())
    data[-10] ^= 0xFF
    dst.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum"):
        EncoderPair.load(dst)


@pytest.mark.slow
def test_evaluate_runs_end_to_end_on_a_tiny_generated_corpus(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """`crossmix corpus` output, real Spleeter separation, the shipped model, `crossmix evaluate`."""
    from cli import main

    corpus = tmp_path / "corpus"
    assert main(["corpus", "--singers", "3", "--songs", "3", "--seed", "7", "--seconds", "6",
                 "--first-singer", "500", "-o", str(corpus)]) == 0
    out = tmp_path / "eval.json"
    rc = main(["evaluate", "--data", str(corpus), "--model", str(default_encoders_path()),
               "--split", "all", "--cache", str(tmp_path / "features"), "--json", str(out)])
    assert rc == 0
    assert "Singer identification" in capsys.readouterr().out
    rep = json.loads(out.read_text())
    assert rep["model"] == load_default_encoders().model_id
    assert rep["n_singers"] == 3 and rep["n_queries"] == 3  # 3 songs: 2 build the model, 1 queries
    assert set(rep["singer_id"]) == {"M->M", "V->V", "M->V", "V->M", "[M+V]", "[M,V]"}
    for r in rep["query_by_singer"].values():
        assert all(0.0 <= x <= 1.0 for x in r.values())
