"""The paper's evaluation (Kim et al. 2021, 4.2-4.3) on held-out singers, and an MFCC floor.

Song vectors are computed as the app computes them (:mod:`core.embedding.song`): per-segment unit
vectors averaged over the song's vocal-active segments and normalised, in spaces M, V,
[M+V] and [M,V]. Similarity is cosine.

**Singer identification.** For each singer, the first 60% of its songs by sorted path (at
least one, leaving at least one) build the singer model (the normalised mean of their
vectors); the other songs are queries. A scenario ``"A->B"`` matches queries embedded in space
A against singer models built in space B (``"M->V"``: a mix query against vocal-built singer
models); ``"[M+V]"`` and ``"[M,V]"`` use the combined space on both sides. Top-1/top-5
accuracy over the queries. Singers with a single song are left out.

**Query-by-singer.** Every song queries all the other songs; the relevant songs are those of
its singer. Recall@k (relevant songs in the top k / all relevant), precision@k (relevant in
the top k / k) and average precision (mean of the precision at the rank of each relevant
song), averaged over the queries that have at least one relevant song (mAP).

**Own song.** A label-free check of cross-domain alignment: each song's V vector queries the
M vectors of all songs (and M queries V); top-1/top-5 is how often its own song comes first.

**Baselines.** Every report carries two peers, computed on the same songs and segments:

- ``mfcc``: the mean of 20 MFCCs (DCT-II of the dB mel spectrogram of the mix) over the same
  segments, each dimension standardised over the evaluated songs; space M only.
- ``resemblyzer``: the real-speech GE2E speaker encoder from resemblyzer's wheel
  (:meth:`core.embedding.encoders.EncoderPair.resemblyzer`), the same network on the vocal and on the
  mix, so it has every space and scenario.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.fft
import torch

from core.atomic import atomic_write
from core.embedding.encoders import EncoderPair
from core.embedding.features import LOG_GAIN
from core.embedding.song import combine, embed_segments, l2_normalise
from core.progress import CancelToken, check_cancel
from training.dataset import SongEntry, SongFeatures

F32 = npt.NDArray[np.float32]
#: Share of a singer's songs (first by sorted path) that build its singer model.
MODEL_FRACTION = 0.6
SCENARIOS = (("M->M", "M", "M"), ("V->V", "V", "V"), ("M->V", "M", "V"), ("V->M", "V", "M"),
             ("[M+V]", "[M+V]", "[M+V]"), ("[M,V]", "[M,V]", "[M,V]"))
QBS_SPACES = ("M", "V", "[M+V]", "[M,V]")
N_MFCC = 20


# --- metrics -------------------------------------------------------------------------------


def rank_by_cosine(queries: F32, items: F32) -> npt.NDArray[np.int64]:
    """For each query row, item indices from most to least similar (cosine; stable ties)."""
    sim = l2_normalise(queries) @ l2_normalise(items).T
    return np.argsort(-sim, axis=1, kind="stable").astype(np.int64)


def singer_identification(model_vecs: F32, model_labels: list[str], query_vecs: F32,
                          query_labels: list[str], *, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy of naming each query's singer among the singer models."""
    order = rank_by_cosine(query_vecs, model_vecs)
    labels = np.array(model_labels)
    out: dict[str, float] = {}
    for k in ks:
        hits = [q in set(labels[order[i, :k]]) for i, q in enumerate(query_labels)]
        out[f"top{k}"] = float(np.mean(hits)) if hits else 0.0
    return out


def average_precision(relevant_in_rank_order: npt.NDArray[np.bool_]) -> float:
    """AP of one ranking: mean over relevant items of precision at their rank (0 when none)."""
    rel = np.asarray(relevant_in_rank_order, dtype=bool)
    if not rel.any():
        return 0.0
    ranks = np.flatnonzero(rel) + 1
    return float(np.mean(np.arange(1, len(ranks) + 1) / ranks))


def query_by_singer(vecs: F32, labels: list[str], *, ks: tuple[int, ...] = (5, 10)) -> dict[str, float]:
    """R@k, Pr@k and mAP with every item querying all the others (leave-one-out)."""
    lab = np.array(labels)
    sim = l2_normalise(vecs) @ l2_normalise(vecs).T
    np.fill_diagonal(sim, -np.inf)
    sums = {f"R@{k}": 0.0 for k in ks} | {f"Pr@{k}": 0.0 for k in ks} | {"mAP": 0.0}
    n = 0
    for i in range(len(lab)):
        order = np.argsort(-sim[i], kind="stable")
        order = order[order != i]
        rel = lab[order] == lab[i]
        total = int(rel.sum())
        if total == 0:
            continue
        n += 1
        for k in ks:
            hit = int(rel[:k].sum())
            sums[f"R@{k}"] += hit / total
            sums[f"Pr@{k}"] += hit / k
        sums["mAP"] += average_precision(rel)
    order_keys = [f"R@{k}" for k in ks] + [f"Pr@{k}" for k in ks] + ["mAP"]
    return {key: (sums[key] / n if n else 0.0) for key in order_keys}


def model_query_split(songs: list[SongEntry]) -> tuple[list[int], list[int]]:
    """Indices of singer-model songs and query songs (first 60% of each singer by sorted path)."""
    by: dict[str, list[int]] = {}
    for i, s in enumerate(songs):
        by.setdefault(s.singer, []).append(i)
    model_idx: list[int] = []
    query_idx: list[int] = []
    for singer in sorted(by):
        idx = sorted(by[singer], key=lambda i: str(songs[i].path))
        if len(idx) < 2:
            continue
        k = max(1, min(len(idx) - 1, int(round(MODEL_FRACTION * len(idx)))))
        model_idx += idx[:k]
        query_idx += idx[k:]
    return model_idx, query_idx


def singer_models(vecs: F32, labels: list[str]) -> tuple[F32, list[str]]:
    """Normalised mean vector per singer (sorted singer names)."""
    names = sorted(set(labels))
    lab = np.array(labels)
    return np.stack([l2_normalise(vecs[lab == n].mean(0)) for n in names]), names


# --- vectors -------------------------------------------------------------------------------


@torch.no_grad()
def song_vectors(encoders: EncoderPair, feats: list[SongFeatures], *,
                 cancel: CancelToken | None = None) -> dict[str, F32]:
    """Vectors of every song in each space: ``{"M": (N, d), "V": ..., "[M+V]": ..., "[M,V]": (N, 2d)}``."""
    encoders.eval()
    rows: dict[str, list[F32]] = {s: [] for s in QBS_SPACES}
    for f in feats:
        check_cancel(cancel, "evaluation")
        m = embed_segments(encoders, torch.from_numpy(f.mix.astype(np.float32)), domain="mix").mean(0)
        v = embed_segments(encoders, torch.from_numpy(f.vocal.astype(np.float32)), domain="vocal").mean(0)
        M, V, MpV, MV = combine(m.cpu().numpy(), v.cpu().numpy())
        assert V is not None and MpV is not None and MV is not None
        for name, vec in zip(QBS_SPACES, (M, V, MpV, MV), strict=True):
            rows[name].append(vec)
    return {k: np.stack(v).astype(np.float32) for k, v in rows.items()}


def mfcc_vectors(feats: list[SongFeatures]) -> F32:
    """Mean of 20 MFCCs of each song's mix segments, standardised per dimension over the songs."""
    out = []
    for f in feats:
        logmel = f.mix.astype(np.float64)  # (count, 128, frames): log10(1 + G * power)
        power = (np.power(10.0, logmel) - 1.0) / LOG_GAIN
        db = 10.0 * np.log10(np.maximum(power, 1e-10))
        mfcc = scipy.fft.dct(db, type=2, axis=1, norm="ortho")[:, :N_MFCC, :]
        out.append(mfcc.mean(axis=(0, 2)))
    x = np.stack(out)
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-9)
    res: F32 = x.astype(np.float32)
    return res


# --- the report ----------------------------------------------------------------------------


def own_song_retrieval(queries: F32, items: F32) -> dict[str, float]:
    """Each song's query vector against every song's item vector: is its own song first (top-5)?

    A label-free measure of cross-domain alignment: with V queries and M items it asks whether
    a song's separated vocal finds the song's own mix among all the mixes.
    """
    ranks = rank_by_cosine(queries, items)
    own = np.arange(len(queries))[:, None]
    hit = ranks == own
    return {"top1": float(hit[:, :1].any(axis=1).mean()), "top5": float(hit[:, :5].any(axis=1).mean())}


def _own_songs(vecs: dict[str, F32]) -> dict[str, dict[str, float]]:
    """Own-song retrieval across the domains, both ways."""
    return {"V->M": own_song_retrieval(vecs["V"], vecs["M"]), "M->V": own_song_retrieval(vecs["M"], vecs["V"])}


def _protocol(vecs: dict[str, F32], labels: list[str], model_idx: list[int], query_idx: list[int]) -> tuple[dict[str, Any], dict[str, Any]]:
    q_labels = [labels[i] for i in query_idx]
    m_labels = [labels[i] for i in model_idx]
    sid: dict[str, Any] = {}
    for name, q_space, m_space in SCENARIOS:
        if q_space not in vecs or m_space not in vecs:
            continue
        models, names = singer_models(vecs[m_space][model_idx], m_labels)
        sid[name] = singer_identification(models, names, vecs[q_space][query_idx], q_labels)
    qbs = {space: query_by_singer(vecs[space], labels) for space in QBS_SPACES if space in vecs}
    return sid, qbs


def evaluate_songs(encoders: EncoderPair, songs: list[SongEntry],
                   feats: list[SongFeatures] | dict[str, list[SongFeatures]], *,
                   protocol: str = "", cancel: CancelToken | None = None,
                   feature_store: Callable[[str], Any] | None = None,
                   baselines: bool = True) -> dict[str, Any]:
    """The evaluation report (JSON-able) of ``encoders`` on these songs; see the module docstring.

    ``feats`` are the songs' cached segments for the encoders' front end, or a dict of them by
    front end (``"logmel"``, ``"ge2e"``). The baselines need both front ends:
    ``feature_store(frontend)`` (a :class:`training.dataset.FeatureStore` factory) supplies a
    missing one; without it a baseline whose features are missing is left out.
    """
    by_frontend = dict(feats) if isinstance(feats, dict) else {encoders.frontend: feats}

    def feats_for(frontend: str) -> list[SongFeatures] | None:
        if frontend not in by_frontend and feature_store is not None:
            kept, got, failures = feature_store(frontend).load_many(songs, cancel=cancel)
            if len(kept) != len(songs):
                return None
            by_frontend[frontend] = got
        return by_frontend.get(frontend)

    labels = [s.singer for s in songs]
    model_idx, query_idx = model_query_split(songs)
    own = feats_for(encoders.frontend)
    if own is None:
        raise ValueError(f"no {encoders.frontend} features for the songs")
    vecs = song_vectors(encoders, own, cancel=cancel)
    sid, qbs = _protocol(vecs, labels, model_idx, query_idx)
    songs_vm = _own_songs(vecs)
    peers: dict[str, Any] = {}
    if baselines:
        logmel = feats_for("logmel")
        if logmel is not None:
            b_sid, b_qbs = _protocol({"M": mfcc_vectors(logmel)}, labels, model_idx, query_idx)
            peers["mfcc"] = {"singer_id": b_sid, "query_by_singer": b_qbs}
        ge2e = feats_for("ge2e")
        if ge2e is not None:
            from core.errors import ModelError

            try:
                peer = EncoderPair.resemblyzer().to(encoders.device)
            except ModelError:
                peer = None
            if peer is not None:
                r_vecs = song_vectors(peer, ge2e, cancel=cancel)
                r_sid, r_qbs = _protocol(r_vecs, labels, model_idx, query_idx)
                peers["resemblyzer"] = {"singer_id": r_sid, "query_by_singer": r_qbs, "model": peer.model_id,
                                        "own_song": _own_songs(r_vecs)}
    report: dict[str, Any] = {
        "model": encoders.model_id,
        "n_singers": len(set(labels)),
        "n_songs": len(songs),
        "n_queries": len(query_idx),
        "n_singer_models": len({labels[i] for i in model_idx}),
        "protocol": protocol,
        "chance_top1": 1.0 / max(1, len({labels[i] for i in model_idx})),
        "singer_id": sid,
        "query_by_singer": qbs,
        "own_song": songs_vm,
        "baselines": peers,
    }
    if "mfcc" in peers:  # the layout of earlier reports (the Retrain tab reads it)
        report["baseline_mfcc"] = {"singer_id": peers["mfcc"]["singer_id"]["M->M"],
                                   "query_by_singer": peers["mfcc"]["query_by_singer"]["M"]}
    return report


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    """Write the report as JSON (atomically)."""
    p = Path(path)
    with atomic_write(p) as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    return p


def format_table(report: dict[str, Any]) -> str:
    """Plain-text tables in the shape of the paper's Figure 4 and Table 1."""
    lines = [f"model {report['model'][:16]}  singers {report['n_singers']}  songs {report.get('n_songs', '?')}  "
             f"singer-ID queries {report['n_queries']}  (chance top-1 {report.get('chance_top1', 0):.3f})", "",
             "Singer identification (query space -> singer-model space)",
             f"{'scenario':<12}{'top-1':>8}{'top-5':>8}"]
    peer = report.get("baselines", {}).get("resemblyzer")
    if peer:
        lines[-1] += f"{'resemblyzer':>14}"
    for name, r in report["singer_id"].items():
        row = f"{name:<12}{r['top1']:>8.4f}{r['top5']:>8.4f}"
        if peer and name in peer["singer_id"]:
            row += f"{peer['singer_id'][name]['top1']:>8.4f}{peer['singer_id'][name]['top5']:>8.4f}"
        lines.append(row)
    b = report.get("baseline_mfcc")
    if b:
        lines.append(f"{'MFCC mean':<12}{b['singer_id']['top1']:>8.4f}{b['singer_id']['top5']:>8.4f}")
    own = report.get("own_song")
    if own:
        lines += ["", "Own song (a song's vocal finds its own mix among all, and back)"]
        for name, r in own.items():
            row = f"{name:<12}{r['top1']:>8.4f}{r['top5']:>8.4f}"
            if peer and "own_song" in peer:
                row += f"{peer['own_song'][name]['top1']:>8.4f}{peer['own_song'][name]['top5']:>8.4f}"
            lines.append(row)
    keys = ("R@5", "R@10", "Pr@5", "Pr@10", "mAP")
    lines += ["", "Query-by-singer", f"{'space':<12}" + "".join(f"{k:>8}" for k in keys)
              + (f"{'resemblyzer mAP':>17}" if peer else "")]
    for name, r in report["query_by_singer"].items():
        row = f"{name:<12}" + "".join(f"{r[k]:>8.4f}" for k in keys)
        if peer and name in peer["query_by_singer"]:
            row += f"{peer['query_by_singer'][name]['mAP']:>17.4f}"
        lines.append(row)
    if b:
        q = b["query_by_singer"]
        lines.append(f"{'MFCC mean':<12}" + "".join(f"{q[k]:>8.4f}" for k in keys))
    return "\n".join(lines)


def evaluate_folder(*, data: str | Path, model: str | Path | None = None, split: str = "test",
                    vocals: str | None = None,
                    separator: str | None = None, cache: str | Path | None = None,
                    segments_per_song: int | None = None, device: torch.device | None = None,
                    progress: Any = None, cancel: CancelToken | None = None) -> dict[str, Any]:
    """Evaluate encoders on a labelled folder.

    ``model`` is a checkpoint path or a name (:func:`core.embedding.encoders.resolve_encoders`; the
    shipped encoders when ``None``). ``split="test"`` (or ``"val"``) uses the test (validation)
    singers recorded in the checkpoint's training split; ``split="all"`` every singer of the folder. ``vocals``, ``separator`` and
    ``segments_per_song`` default to what the checkpoint was trained with (else separated
    vocals, Spleeter, 16).
    """
    from core.errors import TrainingError
    from training.dataset import FeatureStore, load_dataset, make_separator

    dev = device or torch.device("cpu")
    from core.embedding.encoders import resolve_encoders

    encoders = resolve_encoders(model, device=dev)
    trained = dict(encoders.config.training.get("config", {}))
    ds = load_dataset(data)
    if split == "all":
        songs = ds.subset(ds.singers)
        protocol = "all singers of the folder"
    elif split in ("test", "val"):
        rec = encoders.config.training.get("split")
        name = "test" if split == "test" else "validation"
        if not rec or not rec.get(split):
            raise TrainingError(f"{model or encoders.config.name}: these encoders record no {name} singers; "
                                "evaluate with --split all.")
        songs = ds.subset(rec[split])
        if not songs:
            raise TrainingError(f"{data}: none of the checkpoint's {name} singers are in this folder; use --split all.")
        protocol = f"{name} singers of the training split"
    else:
        raise TrainingError(f"Unknown split {split!r}: use 'test', 'val' or 'all'.")
    vocals = vocals or trained.get("vocals", "separated")
    sep_name = separator or trained.get("separator", "spleeter")
    cap = segments_per_song or int(trained.get("segments_per_song", 16))
    sep = make_separator(sep_name, dev) if vocals == "separated" else None
    def store(frontend: str) -> FeatureStore:
        return FeatureStore(Path(cache) if cache else None, vocals=vocals, separator=sep, max_segments=cap,
                            frontend=frontend)

    kept, feats, failures = store(encoders.frontend).load_many(songs, progress=progress, cancel=cancel)
    if len({s.singer for s in kept}) < 2:
        raise TrainingError(f"{data}: evaluation needs songs of at least two singers.")
    report = evaluate_songs(encoders, kept, {encoders.frontend: feats}, protocol=protocol, cancel=cancel,
                            feature_store=store)
    report["data"] = str(Path(data).resolve())
    report["failures"] = [[str(p), why] for p, why in failures]
    return report
