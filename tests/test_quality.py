"""Measured per-space quality and the best space a library can serve (the app's default)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.embedding import quality as quality_mod
from core.embedding.encoders import EncoderPair
from core.embedding.quality import Quality, SpaceQuality, from_report, quality_for


def _report(model: str, sid: dict[str, tuple[float, float]]) -> dict[str, object]:
    return {"model": model, "n_singers": 40, "n_songs": 160, "chance_top1": 0.025,
            "singer_id": {k: {"top1": a, "top5": b} for k, (a, b) in sid.items()},
            "query_by_singer": {}, "baselines": {}}


SID = {"M->M": (0.40, 0.80), "V->V": (0.90, 1.0), "M->V": (0.3, 0.7), "V->M": (0.55, 0.9),
       "[M+V]": (0.8, 1.0), "[M,V]": (0.85, 1.0)}


def test_best_space_is_the_best_measured_one_the_library_can_serve() -> None:
    q = from_report(_report("x", SID), name="peer")
    assert set(q.spaces) == {"vocal->mix", "mix->mix", "vocal->vocal", "[M,V]"}
    assert q.spaces["vocal->mix"] == SpaceQuality(0.55, 0.9)
    space, why = q.best_space(has_vocals=True)
    assert space == "vocal->vocal" and "0.90" in why and "40 unseen singers" in why and "(chance 0.03)" in why
    space, why = q.best_space(has_vocals=False)  # a fast-mode library has no vocals
    assert space == "vocal->mix" and "full mode" in why
    assert "vocal->mix 0.55/0.90" in q.summary()
    # Ties go to the paper's vocal->mix.
    tie = Quality("t", "p", {"mix->mix": SpaceQuality(0.5, 0.9), "vocal->mix": SpaceQuality(0.5, 0.9)})
    assert tie.best_space(has_vocals=True)[0] == "vocal->mix"
    assert Quality("none", "p").best_space(has_vocals=True)[0] == "vocal->mix"


def test_quality_comes_from_the_shipped_table_or_beside_a_checkpoint(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "encoders").mkdir()
    (tmp_path / "encoders" / "quality.json").write_text(json.dumps(
        {"abc": {"name": "shipped", "report": _report("abc", SID)}}))
    monkeypatch.setattr(quality_mod, "assets_dir", lambda: tmp_path)
    assert quality_for(model_id="abc").name == "shipped"  # type: ignore[union-attr]
    assert quality_for(model_id="unknown") is None
    run = tmp_path / "run"
    run.mkdir()
    (run / "evaluation.json").write_text(json.dumps(_report("m1", {"V->M": (0.7, 0.9)})))
    q = quality_for(model_id="m1", checkpoint=run / "best.safetensors")
    assert q is not None and q.name == "run" and q.best_space(has_vocals=True)[0] == "vocal->mix"
    # An evaluation of other weights is not theirs.
    assert quality_for(model_id="m2", checkpoint=run / "best.safetensors") is None
    (run / "evaluation.json").write_text("{broken")
    assert quality_for(model_id="m1", checkpoint=run / "best.safetensors") is None


def _songs_and_tiny_quality(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three little songs, and a quality table in which the tiny test encoders have SID's figures."""
    from tests.test_library import write_song

    songs = tmp_path / "music"
    for i in range(3):
        write_song(songs / f"song{i}.wav", seed=i)
    tiny = EncoderPair.tiny().model_id
    (tmp_path / "assets" / "encoders").mkdir(parents=True)
    (tmp_path / "assets" / "encoders" / "quality.json").write_text(json.dumps(
        {tiny: {"name": "tiny test encoders", "report": _report(tiny, SID)}}))
    monkeypatch.setattr(quality_mod, "assets_dir", lambda: tmp_path / "assets")
    return songs


def test_cli_match_auto_space_and_status_report_the_measurements(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from cli import main
    songs = _songs_and_tiny_quality(tmp_path, monkeypatch)
    models = ["--encoders", "tiny", "--separator", "tiny", "--device", "cpu"]
    lib = str(tmp_path / "lib")
    for mode, want in (("fast", "vocal->mix"), ("full", "vocal->vocal")):
        assert main(["library", "add", str(songs), "--library", lib, "--mode", mode, "--no-analyze", *models]) == 0
        capsys.readouterr()
        assert main(["library", "status", "--library", lib]) == 0
        out = capsys.readouterr().out
        assert "quality   singer-ID top-1/top-5 on 40 unseen singers" in out
        assert f"default space {want}" in out
        assert main(["match", str(songs / "song0.wav"), "--library", lib, "-k", "2", *models]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"space: {want} measured best for tiny test encoders")
        assert f"space {want}" in out
        assert main(["match", str(songs / "song0.wav"), "--library", lib, "-k", "2", "--json", *models]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["space"] == want and "measured best" in doc["space_reason"]
    assert main(["library", "status", "--library", lib, "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["quality"]["default_space"] == "vocal->vocal"
    assert st["quality"]["spaces"]["vocal->mix"] == {"top1": 0.55, "top5": 0.9}


def test_settings_v2_default_space_becomes_auto(qapp: object, tmp_path: Path) -> None:
    from gui.settings import SCHEMA_VERSION, Settings

    old = tmp_path / "s.ini"
    old.write_text("[meta]\nversion=2\n[search]\nspace=vocal->mix\n")
    assert Settings(old).get("search/space") == "auto"
    chosen = tmp_path / "c.ini"
    chosen.write_text("[meta]\nversion=2\n[search]\nspace=mix->mix\n")
    s = Settings(chosen)
    assert s.get("search/space") == "mix->mix" and s.version == SCHEMA_VERSION == 3
    assert Settings(tmp_path / "new.ini").get("search/space") == "auto"


def test_settings_panel_shows_the_chosen_encoders_measured_quality(qapp: object, tmp_path: Path) -> None:
    from gui.settings import Settings
    from gui.settings_panel import SettingsPanel

    run = tmp_path / "run"
    run.mkdir()
    pair = EncoderPair.tiny()
    pair.save(run / "best")
    (run / "evaluation.json").write_text(json.dumps(_report(pair.model_id, SID)))
    settings = Settings(tmp_path / "s.ini")
    panel = SettingsPanel(settings)
    settings.set("model/encoder_checkpoint", str(run / "best.safetensors"))
    text = panel.quality_label.text()
    assert "40 unseen singers" in text and "0.55" in text
    # the chance level (one singer in 40; five in 40 for top-5) is a row of its own
    assert "<i>chance</i></td><td align='right'>&nbsp;<i>0.03</i></td><td align='right'>&nbsp;<i>0.12</i>" in text
    assert "searches vocal->vocal in a library indexed in full mode and vocal->mix in a fast one" in text
    settings.set("model/encoder_checkpoint", str(tmp_path / "nowhere.safetensors"))
    assert "Not measured" in panel.quality_label.text()


def test_the_app_searches_the_best_measured_space_and_says_why(qapp: object, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from core.library.library import Library
    from core.separation.separator import Separator, StemCache
    from gui.engine import Session
    songs = _songs_and_tiny_quality(tmp_path, monkeypatch)
    session = Session(separator_factory=lambda d: Separator.tiny(device=d),
                      encoders_factory=lambda d: EncoderPair.tiny(),
                      library_factory=lambda: Library.open(tmp_path / "lib"),
                      stem_cache=StemCache(tmp_path / "stems"), duplicate_threshold=1.5)
    try:
        for mode, want in (("fast", "vocal->mix"), ("full", "vocal->vocal")):
            session.add_folder(songs)
            session.scan(mode=mode)
            assert session.auto_space()[0] == want
            res = session.query(songs / "song0.wav", space="auto", k=2)
            assert res.search is not None and res.search.space == want
            assert res.space_note.startswith(f"Search space: {want} measured best for tiny test encoders")
            assert "measured best" not in res.message  # a note, not a warning
            again = session.query(songs / "song0.wav", space="mix->mix", k=2)
            assert again.search is not None and again.search.space == "mix->mix"
            assert again.space_note == ""
    finally:
        session.close()


def test_shipped_models_are_chosen_by_name() -> None:
    from core.paths import assets_dir
    from core.registry import load_encoders as resolve_encoders
    from core.registry import shipped_encoder_names

    assert "cross-sp" in shipped_encoder_names()
    by_name = resolve_encoders("cross-sp")
    assert by_name.model_id == EncoderPair.load(assets_dir() / "encoders" / "cross-sp.safetensors").model_id
    from core.errors import ModelError

    with pytest.raises(ModelError, match="not found"):
        resolve_encoders("no-such-model")
