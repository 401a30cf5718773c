"""Indexing a library on a Ray cluster (``crossmix library add|scan --engine ray``).

The indexing map is a Ray Data job: the driver plans the scan exactly as a local scan does
(:meth:`core.library.scan.Scanner.plan`: new and changed files, re-embeds, known failures), then::

    from_items(files) -> map_batches(SongIndexer, actor pool) -> write_parquet(shard folder)

Each ``SongIndexer`` actor loads the separator and encoders once (on its GPU when the cluster
has GPUs: ``num_gpus`` per actor) and runs :func:`core.library.scan.index_song` on every file of its
batches: the very function of the local scan's per-song work, so a song gets the same
fingerprint, analysis and embeddings (to float tolerance) either way. Every file becomes one
row of a Parquet shard (:mod:`core.library.shards`), a failure too (with its stage and reason). The
driver then ingests the shards into the catalog (a transaction per shard file, idempotent),
forgets files that disappeared and rebuilds the search indexes.

Resuming: shards already in the folder are ingested *before* planning, so a killed job's
finished work is kept and only files in neither the catalog nor a shard are indexed again.
A worker lost in the middle costs a retry of its batch (Ray's task retries); the batch's
shard is written by the retried task, and a shard cut short by a killed writer is unreadable
and skipped (its files are indexed by the next run), so rows are never wrong or missing.

Stems separated on the cluster are not kept (a catalogue's stems would need ~28 MB per
minute of audio); a match's stems are separated when the app first previews it.

Needs the ``scale`` extra (``pip install -e '.[scale]'``: Ray Data and pyarrow).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from core.errors import ClusterError, CrossmixError
from core.progress import CancelToken, Progress, ProgressFn, check_cancel

if TYPE_CHECKING:
    import torch

    from core.embedding.encoders import EncoderPair
    from core.library.library import Library
    from core.library.scan import Scanner, ScanReport
    from core.library.shards import IngestReport
    from core.separation.separator import Separator

log = logging.getLogger(__name__)

#: The pinned version the ``scale`` extra installs (scripts/constraints.txt).
RAY_VERSION = "2.60.0"
INSTALL_HINT = (
    "install the scale extra: pip install -e '.[scale]' (in a checkout; or pip install "
    f"'ray[data]=={RAY_VERSION}'), then run the command again, or leave out --engine ray to "
    "index on this machine alone"
)
#: Default shard folder inside the library.
SHARDS_DIR = "shards"
#: Songs per shard file: the most a killed job loses to redo per writer, and few enough
#: files at 10^6 songs (about 4 000).
ROWS_PER_SHARD = 256
#: Songs per actor call.
BATCH_SIZE = 4


def require_ray() -> ModuleType:
    """The ``ray`` module with Ray Data and pyarrow importable.

    Raises
    ------
    ClusterError
        Ray (or pyarrow) is not installed, with how to install it.
    """
    try:
        import pyarrow  # noqa: F401
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ClusterError(f"--engine ray needs Ray Data, which is not installed ({exc}): "
                           f"{INSTALL_HINT}.") from None
    return ray


@dataclass(frozen=True)
class ModelSpec:
    """Which models to load, by name (:mod:`core.registry`): what each actor resolves on its
    own node (weights are never shipped between processes). ``encoders`` as ``--encoders``
    (``None``: shipped; ``tiny``: random test weights), ``separator`` as ``--separator``,
    ``device`` as ``--device``."""

    encoders: str | None = None
    separator: str = "spleeter-2stems"
    device: str = "auto"

    def torch_device(self) -> torch.device:
        from core.device import resolve_device

        return resolve_device(self.device)

    def load_encoders(self) -> EncoderPair:
        from core.registry import load_encoders

        return load_encoders(self.encoders, device=self.torch_device())

    def load_separator(self) -> Separator:
        from core.registry import load_separator

        return load_separator(self.separator, device=self.torch_device())


@dataclass(frozen=True)
class RayOptions:
    """How to run the job.

    address : ``None`` starts a local cluster for the job (``num_cpus`` CPUs, all by
        default) and stops it at the end; ``"auto"`` joins the cluster started on this
        machine with ``ray start``; ``"HOST:PORT"`` joins that head node.
    actors : actor pool size (default: one per CPU, or per GPU when the cluster has GPUs).
    gpus_per_actor : default 1 when the cluster has GPUs, else 0.
    shards : shard folder or URI (default ``<library>/shards``).
    """

    address: str | None = None
    num_cpus: int | None = None
    actors: int | None = None
    cpus_per_actor: float = 1.0
    gpus_per_actor: float | None = None
    batch_size: int = BATCH_SIZE
    rows_per_shard: int = ROWS_PER_SHARD
    shards: str | None = None


def _head_reachable(address: str) -> bool:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--address {address!r}: write it as HOST:PORT (the head node's "
                           "GCS port, 6379 by default) or auto.")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5.0):
            return True
    except OSError:
        return False


def _auto_address() -> str:
    """The address ``ray start`` left on this machine (Ray's own file), or ``RAY_ADDRESS``."""
    env = os.environ.get("RAY_ADDRESS")
    if env:
        return env
    current = Path("/tmp/ray/ray_current_cluster")  # written by 'ray start --head'
    try:
        text = current.read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    if not text:
        raise ClusterError("--address auto: no Ray cluster was started on this machine; start "
                           "one with 'ray start --head', give --address HOST:PORT, or leave "
                           "out --address to run a local cluster for this job.")
    return text


def connect(ray: ModuleType, options: RayOptions) -> bool:
    """Join or start the cluster; returns whether this call started it (and so must stop it).

    Raises
    ------
    ClusterError
        The address is malformed, or nothing answers there.
    """
    address = None
    if options.address is not None:
        address = _auto_address() if options.address == "auto" else options.address
        if not _head_reachable(address):
            raise ClusterError(
                f"--address {options.address}: no Ray head node answers at {address}; start "
                "it with 'ray start --head' there, check the host and port (and the "
                "firewall), or leave out --address to run locally.")
    if not logging.getLogger().isEnabledFor(logging.INFO):
        # Ray Data reports each stage's progress as INFO lines; crossmix shows its own
        logging.getLogger("ray").setLevel(logging.WARNING)
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    if ray.is_initialized():  # a cluster this process joined before (tests, notebooks)
        return False
    if address is None:
        ray.init(num_cpus=options.num_cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        return True
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"--address {options.address}: cannot join the Ray cluster at "
                           f"{address} ({exc}).") from None
    return True


class SongIndexer:
    """A Ray Data actor: models loaded once, then :func:`core.library.scan.index_song` per file."""

    def __init__(self, spec: ModelSpec, mode: str, analyze: bool, max_duration: float | None,
                 known_hashes: frozenset[str], threads: int = 1) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.spec = spec
        self.mode = mode
        self.analyze = analyze
        self.max_duration = max_duration
        self.known = known_hashes
        self.encoders = spec.load_encoders()
        self.separator = spec.load_separator() if mode == "full" else None
        self.device = spec.torch_device()

    def __call__(self, batch: dict[str, Any]) -> Any:
        from core.library.scan import ScanItem, index_song
        from core.library.shards import songs_to_table

        done = []
        for path, size, mtime in zip(batch["path"], batch["size"], batch["mtime_ns"],
                                     strict=True):
            item = ScanItem(str(path), "new", int(size), int(mtime))
            done.append(index_song(item, mode=self.mode, encoders=self.encoders,
                                   separator=self.separator, known_hashes=self.known,
                                   analyze=self.analyze, device=self.device,
                                   max_duration=self.max_duration))
        return songs_to_table(done, model_id=self.encoders.model_id)


def shard_location(lib: Library, options: RayOptions) -> str:
    return options.shards or str(lib.root / SHARDS_DIR)


def run_scan(
    lib: Library,
    *,
    mode: str,
    spec: ModelSpec,
    encoders: EncoderPair,
    analyze: bool,
    options: RayOptions,
    retry_failed: bool = False,
    max_duration: float | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> ScanReport:
    """One scan of ``lib`` on Ray (see the module docstring); returns what a local scan
    returns. ``encoders`` are the driver's copy of ``spec``'s encoders (for the model id).

    Raises
    ------
    ClusterError
        Ray missing, the cluster unreachable, the shard folder unusable, or the job failed.
    """
    ray = require_ray()
    from core.audio.decode import DEFAULT_MAX_DURATION
    from core.library.library import ENGINE_META
    from core.library.scan import Scanner, ScanReport
    from core.library.shards import ingest_shards, prepare_shard_folder
    from core.library.spaces import INDEXED_SPACES

    if max_duration is None:
        max_duration = DEFAULT_MAX_DURATION
    t0 = time.monotonic()
    location = shard_location(lib, options)
    prepare_shard_folder(location)
    catalog = lib.catalog
    model_id = encoders.model_id
    if catalog.model_id != model_id:
        catalog.set_model_id(model_id)
    catalog.set_meta(ENGINE_META, "ray")
    if progress:
        progress(Progress("scan", 0, 0, "songs", "ingesting shards of earlier runs"))
    earlier = ingest_shards(catalog, location, model_id=model_id)  # a killed job's work
    scanner = Scanner(catalog, lib.stem_cache, encoders=encoders, separator=None, mode=mode,
                      analyze=analyze, retry_failed=retry_failed, max_duration=max_duration)
    report = ScanReport()
    items, gone = scanner.plan(report)
    _count_earlier_run(report, earlier)
    check_cancel(cancel, "the library scan")
    if items:
        _index_on_ray(ray, lib, scanner, items, location, report, mode=mode, spec=spec,
                      model_id=model_id, analyze=analyze, max_duration=max_duration,
                      options=options, progress=progress)
    if gone:
        report.removed = len(gone)
        report.removed_songs = catalog.forget_paths(gone)
    if progress:
        progress(Progress("index", 0, 1, "steps", "building search indexes"))
    lib.indexes.rebuild_all(list(INDEXED_SPACES), model_id)
    report.elapsed_s = time.monotonic() - t0
    return report


def _count_earlier_run(report: ScanReport, earlier: IngestReport) -> None:
    """What a killed job did (its shards ingested at the start) is reported as done by this
    run, not as unchanged."""
    report.indexed += earlier.indexed
    report.linked += earlier.linked
    report.unchanged = max(0, report.unchanged - earlier.indexed - earlier.linked)
    report.failed += earlier.failed
    report.skipped_failed = max(0, report.skipped_failed - earlier.failed)
    report.audio_s += earlier.audio_s


def _index_on_ray(ray: ModuleType, lib: Library, scanner: Scanner, items: list[Any],
                  location: str, report: ScanReport, *, mode: str, spec: ModelSpec,
                  model_id: str, analyze: bool, max_duration: float | None,
                  options: RayOptions, progress: ProgressFn | None) -> None:
    """Run the job on ``items``, ingest the shards it wrote and count them in ``report``.

    Raises
    ------
    ClusterError
        The job failed, or a planned file has no row (indexed or failed) in its shards.
    """
    from core.library.shards import ingest_shards

    catalog = lib.catalog
    before = set(_shard_names(location))
    started = connect(ray, options)
    try:
        _run_job(ray, items, location, mode=mode, spec=spec, analyze=analyze,
                 max_duration=max_duration, options=options,
                 known=frozenset(s.content_hash for s in catalog.songs()
                                 if scanner.complete(s)),
                 progress=progress)
    finally:
        if started:
            ray.shutdown()
    new = sorted(set(_shard_names(location)) - before)
    got = ingest_shards(catalog, location, model_id=model_id, only=new)
    reembed = {i.path for i in items if i.kind == "reembed"}
    known_now = catalog.file_rows_for(reembed)
    report.reembedded += sum(1 for p in reembed if p in known_now)
    report.indexed += got.indexed - min(got.indexed, report.reembedded)
    report.linked += got.linked
    report.failed += got.failed
    report.audio_s += got.audio_s
    planned = {i.path for i in items}
    held = set(catalog.file_rows_for(planned)) | {
        f.path for f in catalog.failures() if f.path in planned}
    missing = planned - held
    if missing:
        raise ClusterError(
            f"the Ray job finished but {len(missing)} of {len(planned)} files have no row "
            f"in its shards (e.g. {sorted(missing)[0]}); what was done is kept: run the "
            "command again to index the rest.")


def _shard_names(location: str) -> list[str]:
    from core.library.shards import shard_files

    return shard_files(location)


def _run_job(ray: ModuleType, items: list[Any], location: str, *, mode: str, spec: ModelSpec,
             analyze: bool, max_duration: float | None, options: RayOptions,
             known: frozenset[str], progress: ProgressFn | None) -> None:
    import ray.data

    resources = ray.cluster_resources()
    cpus = float(resources.get("CPU", 1.0))
    gpus = float(resources.get("GPU", 0.0))
    per_gpu = options.gpus_per_actor if options.gpus_per_actor is not None else (
        1.0 if gpus >= 1 else 0.0)
    if per_gpu > 0 and gpus < per_gpu:
        raise ClusterError(f"--gpus-per-actor {per_gpu:g}: the cluster has {gpus:g} GPUs.")
    if options.actors is not None:
        actors = max(1, options.actors)
    elif per_gpu > 0:
        actors = max(1, int(gpus // per_gpu))
    else:
        actors = max(1, int(cpus // options.cpus_per_actor))
    if spec.device == "auto" and per_gpu == 0:
        spec = ModelSpec(spec.encoders, spec.separator, "cpu")
    n = len(items)
    blocks = max(math.ceil(n / options.rows_per_shard), min(n, 2 * actors))
    log.info("Ray job: %d files, %d actors (%g CPU, %g GPU each), %d shards", n, actors,
             options.cpus_per_actor, per_gpu, blocks)
    if progress:
        progress(Progress("scan", 0, n, "songs",
                          f"indexing on Ray: {actors} actors, {n} files"))
    ds = ray.data.from_items(
        [{"path": i.path, "size": i.size, "mtime_ns": i.mtime_ns} for i in items],
        override_num_blocks=blocks)
    ds = ds.map_batches(
        SongIndexer,
        fn_constructor_kwargs={"spec": spec, "mode": mode, "analyze": analyze,
                               "max_duration": max_duration, "known_hashes": known,
                               "threads": max(1, int(options.cpus_per_actor))},
        batch_size=max(1, options.batch_size), batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=options.cpus_per_actor, num_gpus=per_gpu or None,
        # Ray Data restarts a lost actor and retries its batch (max_restarts and
        # max_task_retries default to -1 for actor pools); a song's own errors never
        # reach Ray: index_song returns them as failure rows
    )
    try:
        ds.write_parquet(location, min_rows_per_file=options.rows_per_shard)
    except CrossmixError:
        raise
    except Exception as exc:  # a Ray error names the failing task; no traceback for users
        text = str(exc).strip().splitlines()
        raise ClusterError(f"the Ray job failed ({text[-1] if text else type(exc).__name__}); "
                           "what it finished is kept in the shards: run the command again "
                           "to resume.") from exc
    if progress:
        progress(Progress("scan", n, n, "songs", "ingesting the shards"))
