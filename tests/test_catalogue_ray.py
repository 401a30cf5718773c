"""Catalogue scale (issue 13): indexing on a real local Ray cluster, Parquet shards and their
ingest, resuming a killed job, and a catalogue opened read-only by ``crossmix match``.

Real Ray (one local cluster for the module, 2 CPUs, no network), real files, real faiss and
SQLite; tiny random-weight separator and encoders (their weights do not matter here: the
local and the Ray path must agree whatever they are).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

from test_library import write_song  # noqa: E402

from cli import main  # noqa: E402
from core.api import Crossmix  # noqa: E402
from core.embedding.encoders import EncoderPair  # noqa: E402
from core.errors import LibraryReadOnlyError  # noqa: E402
from core.library.catalog import Catalog  # noqa: E402
from core.library.cluster import ModelSpec, RayOptions, run_scan  # noqa: E402
from core.library.library import Library, is_catalogue  # noqa: E402
from core.library.shards import ingest_shards, read_shard, shard_files  # noqa: E402
from core.separation.separator import Separator  # noqa: E402

SONGS = 9
TINY = ["--encoders", "tiny", "--separator", "tiny", "--device", "cpu"]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def music(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """9 distinct 8-s songs (long enough for fingerprints and a tempo), a byte copy of one
    (a duplicate: linked, not embedded twice) and a corrupt file."""
    d = tmp_path_factory.mktemp("music")
    for i in range(SONGS):
        write_song(d / ("b" if i % 3 else "a") / f"song{i}.wav", seed=100 + i, seconds=8.0)
    shutil.copy(d / "a" / "song0.wav", d / "b" / "copy_of_song0.wav")
    (d / "a" / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt not really a wave file")
    return d


def _dump(folder: Path) -> dict[str, Any]:
    cat = Catalog.open(folder / "catalog.sqlite", read_only=True)
    try:
        d = cat.dump()
        analyses = {s.content_hash: s.analysis for s in cat.songs()}
    finally:
        cat.close()
    for h, song in d["songs"].items():
        song["analysis"] = analyses[h]
    return d


def _assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Equal catalogs: everything equal, the vectors to float tolerance."""
    assert a["model_id"] == b["model_id"]
    assert a["failures"] == b["failures"]
    assert set(a["songs"]) == set(b["songs"])
    for h, sa in a["songs"].items():
        sb = b["songs"][h]
        va, vb = sa.pop("vectors"), sb.pop("vectors")
        assert set(va) == set(vb)
        for space in va:
            np.testing.assert_allclose(va[space], vb[space], atol=1e-5, err_msg=f"{h} {space}")
        aa, ab = sa.pop("analysis"), sb.pop("analysis")
        _assert_close(aa, ab, f"{h} analysis")
        assert sa == sb
        sa["vectors"], sb["vectors"], sa["analysis"], sb["analysis"] = va, vb, aa, ab


def _assert_close(a: Any, b: Any, where: str) -> None:
    """Equal analyses: the same fields, strings and counts equal, floats to 1e-6 relative
    (two processes with other thread counts sum in another order: 0.855307189 vs ...906)."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        a, b = dataclasses.asdict(a), dataclasses.asdict(b)  # type: ignore[arg-type]
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for k in a:
            _assert_close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (float, np.floating, np.ndarray, list, tuple)) and a is not None:
        np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float),
                                   rtol=1e-6, atol=1e-9, err_msg=where)
    else:
        assert a == b, where


@pytest.fixture(scope="module")
def built(ray_cluster: None, music: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> dict[str, Path]:
    """The same folder indexed in full mode by the local scan and by ``--engine ray``."""
    root = tmp_path_factory.mktemp("libs")
    local, on_ray = root / "local", root / "ray"
    with Library.open(local) as lib:
        lib.add_paths([music])
        lib.scan(mode="full", separator=Separator.tiny(), encoders=EncoderPair.tiny(),
                 analyze=True)
    assert main(["library", "add", str(music), "--library", str(on_ray), "--mode", "full",
                 "--engine", "ray", "--rows-per-shard", "2", *TINY]) == 0
    return {"local": local, "ray": on_ray, "music": music}


def test_ray_and_local_paths_give_identical_catalogs(built: dict[str, Path]) -> None:
    local, on_ray = _dump(built["local"]), _dump(built["ray"])
    _assert_same(local, on_ray)
    songs = on_ray["songs"].values()
    assert len(on_ray["songs"]) == SONGS
    assert all(s["fingerprint"] is not None for s in songs)
    assert sum(s["analysis"] is not None and s["tempo"] is not None for s in songs) >= SONGS - 2
    assert all(s["mode"] == "full" and set(s["vectors"]) == {"M", "V", "[M+V]", "[M,V]"}
               for s in songs)
    copies = [s for s in songs if len(s["paths"]) == 2]
    assert len(copies) == 1  # the byte copy was linked to its song
    assert is_catalogue(built["ray"]) and not is_catalogue(built["local"])
    # still a catalogue after a second Ray scan; a local scan makes it a desktop library
    resumed = built["ray"].parent / "rescanned"
    shutil.copytree(built["ray"], resumed)
    assert main(["library", "scan", "--library", str(resumed), "--mode", "full", "--engine",
                 "ray", *TINY]) == 0
    assert is_catalogue(resumed)
    with Library.open(resumed) as lib:
        report = lib.scan(mode="full", separator=Separator.tiny(), encoders=EncoderPair.tiny())
    assert report.unchanged == SONGS + 1 and report.processed == 0
    assert not is_catalogue(resumed)
    with Library.open(resumed, read_only=None) as lib:
        assert not lib.read_only


def test_search_results_are_identical(built: dict[str, Path]) -> None:
    query = built["music"] / "b" / "song4.wav"
    results = []
    for name in ("local", "ray"):
        with Crossmix(library=Library.open(built[name], read_only=True),
                      separator=Separator.tiny(), encoders=EncoderPair.tiny()) as cx:
            res = cx.library().search(cx.embed_query(query), space="[M,V]", k=5)
        results.append(res)
    a, b = results
    assert [m.path for m in a.matches] == [m.path for m in b.matches]
    np.testing.assert_allclose([m.similarity for m in a.matches],
                               [m.similarity for m in b.matches], atol=1e-5)
    assert [d.path for d in a.excluded_duplicates] == [d.path for d in b.excluded_duplicates]
    assert [d.duplicate for d in b.excluded_duplicates] == ["same file"]


def test_a_corrupt_file_is_a_shard_row_and_a_failure(built: dict[str, Path]) -> None:
    shards = built["ray"] / "shards"
    rows = [r for name in shard_files(str(shards))
            for r in read_shard(str(shards), name).to_pylist()]  # type: ignore[union-attr]
    assert len(rows) == SONGS + 2  # one per file: 9 songs, the copy and the broken one
    broken = [r for r in rows if r["path"].endswith("broken.wav")]
    assert len(broken) == 1 and broken[0]["status"] == "failed"
    assert broken[0]["stage"] == "decode" and broken[0]["error"] == "CorruptAudioError"
    assert "wav" in broken[0]["reason"] and broken[0]["vec_M"] is None
    with Library.open(built["ray"], read_only=True) as lib:
        (f,) = lib.failures()
    assert f.path.endswith("broken.wav") and f.stage == "decode" and f.reason


def test_ingest_is_idempotent(built: dict[str, Path], tmp_path: Path) -> None:
    shards = str(built["ray"] / "shards")
    cat = Catalog.open(tmp_path / "catalog.sqlite")
    model = EncoderPair.tiny().model_id
    cat.set_model_id(model)
    first = ingest_shards(cat, shards, model_id=model)
    snapshot = cat.dump()
    again = ingest_shards(cat, shards, model_id=model)  # remembered: nothing re-applied
    assert first.files >= 1 and first.indexed == SONGS and first.failed == 1
    assert again.files == 0 and again.already == first.files
    # forget that they were applied: every row is applied again and changes nothing
    with cat.transaction() as c:
        c.execute("DELETE FROM meta WHERE key LIKE 'shard:%'")
    forced = ingest_shards(cat, shards, model_id=model)
    assert forced.files == first.files and forced.indexed == 0
    assert cat.dump() == snapshot
    cat.close()


def test_a_killed_job_resumes_to_the_same_catalog(built: dict[str, Path], tmp_path: Path
                                                  ) -> None:
    """A job killed after writing some shards (one cut short while being written) and after
    ingesting part of them: the next run keeps that work and indexes only the rest."""
    music = built["music"]
    spec = ModelSpec(encoders="tiny", separator="tiny", device="cpu")
    enc = spec.load_encoders()
    first = built["ray"]  # a complete run with small shards, to cut up
    names = shard_files(str(first / "shards"))
    assert len(names) >= 3
    done, cut = names[:-1], names[-1]
    killed = tmp_path / "killed"
    (killed / "shards").mkdir(parents=True)
    for name in done:
        shutil.copy(first / "shards" / name, killed / "shards" / name)
    (killed / "shards" / cut).write_bytes((first / "shards" / cut).read_bytes()[:200])
    kept = {r["path"] for n in done for r in pq.read_table(first / "shards" / n).to_pylist()}
    with Library.open(killed) as lib:
        lib.add_paths([music])
        ingest_shards(lib.catalog, str(killed / "shards"), model_id=enc.model_id,
                      only=done[:1])  # the kill came during the ingest
        report = run_scan(lib, mode="full", spec=spec, encoders=enc, analyze=True,
                          options=RayOptions(rows_per_shard=2, batch_size=1))
    redone = set(shard_files(str(killed / "shards"))) - set(names)
    redone_paths = {r["path"] for n in redone
                    for r in pq.read_table(killed / "shards" / n).to_pylist()}
    assert redone_paths and not redone_paths & kept  # shards already written were not redone
    assert len(kept) + len(redone_paths) == SONGS + 2
    assert report.failed + report.skipped_failed == 1  # the broken file, once
    _assert_same(_dump(built["ray"]), _dump(killed))


def test_match_opens_the_approximate_index_read_only(built: dict[str, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    lib_dir = tmp_path / "catalogue"
    shutil.copytree(built["ray"], lib_dir)
    assert main(["library", "index", "--kind", "ivfpq", "--library", str(lib_dir)]) == 0
    assert "ivfpq index of 9 songs" in capsys.readouterr().out

    def snapshot() -> dict[str, str]:
        return {str(p.relative_to(lib_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(lib_dir.rglob("*"))
                if p.is_file() and not p.name.endswith(("-wal", "-shm"))}

    before = snapshot()
    query = built["music"] / "a" / "song0.wav"
    assert main(["match", str(query), "--library", str(lib_dir), "--space", "mix->mix",
                 "-k", "3", "--json", *TINY]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert snapshot() == before  # nothing written: no stems, no index, no catalog change
    # the near-duplicate checks still apply: the query itself and its byte copy are left out
    assert {Path(d["path"]).name for d in doc["excluded_duplicates"]} == {"song0.wav"}
    assert len(doc["matches"]) == 3
    # re-ranked by the exact vectors: the same matches and similarities as exact search
    with Crossmix(library=Library.open(built["local"], read_only=True),
                  separator=Separator.tiny(), encoders=EncoderPair.tiny()) as cx:
        exact = cx.library().search(cx.embed_query(query), space="mix->mix", k=3)
    assert [m["path"] for m in doc["matches"]] == [m.path for m in exact.matches]
    np.testing.assert_allclose([m["similarity"] for m in doc["matches"]],
                               [m.similarity for m in exact.matches], atol=1e-5)
    with Library.open(lib_dir, read_only=None) as lib:
        assert lib.read_only and lib.indexes.get("M", lib.catalog.model_id or "").kind == "ivfpq"
        with pytest.raises(LibraryReadOnlyError, match="read-only"):
            lib.add_paths([built["music"]])
        with pytest.raises(LibraryReadOnlyError, match="cannot be scanned here"):
            lib.scan(encoders=EncoderPair.tiny())
    assert snapshot() == before


def test_user_errors_are_messages_not_tracebacks(
        built: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    music = str(built["music"])
    lib = str(tmp_path / "lib")
    assert main(["library", "add", music, "--library", lib, "--engine", "ray",
                 "--address", "127.0.0.1:1", *TINY]) == 1
    err = capsys.readouterr().err
    assert "no Ray head node answers at 127.0.0.1:1" in err and "Traceback" not in err
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert main(["library", "scan", "--library", lib, "--engine", "ray", "--shards",
                 str(a_file), *TINY]) == 1
    assert "is a file" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # Ray not installed
    assert main(["library", "scan", "--library", lib, "--engine", "ray", *TINY]) == 1
    err = capsys.readouterr().err
    assert "pip install -e '.[scale]'" in err and "Traceback" not in err
    fresh = tmp_path / "fresh"
    assert main(["library", "add", music, "--library", str(fresh), "--engine", "ray", *TINY]) == 1
    assert "pip install -e '.[scale]'" in capsys.readouterr().err
    assert not fresh.exists()  # refused before anything was made


def test_the_ray_engine_runs_through_the_facade(built: dict[str, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """``library add --engine ray`` is ``Crossmix.scan_on_ray`` (the facade the app and the
    local scan use): the flags arrive as the models each actor loads and the job's options,
    and what it prints is the report the job made."""
    from core.api import Crossmix

    calls: list[tuple[dict[str, Any], Any]] = []
    real = Crossmix.scan_on_ray

    def spy(self: Crossmix, **kw: Any) -> Any:
        report = real(self, **kw)
        calls.append((kw, report))
        return report

    monkeypatch.setattr(Crossmix, "scan_on_ray", spy)
    lib_dir = tmp_path / "catalogue"
    shutil.copytree(built["ray"], lib_dir)
    new = tmp_path / "new"
    write_song(new / "late.wav", seed=150, seconds=8.0)
    assert main(["library", "add", str(new), "--library", str(lib_dir), "--mode", "full",
                 "--engine", "ray", "--rows-per-shard", "3", *TINY]) == 0
    out = capsys.readouterr().out
    (kw, report), = calls
    assert kw["models"] == ModelSpec(encoders="tiny", separator="tiny", device="cpu")
    assert kw["options"].rows_per_shard == 3 and kw["mode"] == "full"
    assert report.indexed == 1 and report.unchanged == SONGS + 1
    assert f"{report.total} audio files: 1 indexed, 0 re-embedded" in out
    with Library.open(lib_dir, read_only=True) as lib:
        (late,) = [s for s in lib.songs() if s.path.endswith("late.wav")]
        assert late.mode == "full" and late.analysis is not None  # analysed: full mode's default
    assert is_catalogue(lib_dir)
