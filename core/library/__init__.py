"""Song libraries: the catalog, the search index, scanning, the library object, Ray-scale catalogues, query history.

Every public name of the sub-modules is importable from here; the sub-modules load on
first use (``lazy_loader``), so importing the package costs nothing until a name is used.
"""

from typing import TYPE_CHECKING

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submodules=["catalog", "cluster", "history", "index", "library", "query_store", "scan",
                "shards", "spaces"],
    submod_attrs={
        "catalog": [
            "FileRow",
            "Failure",
            "SongRecord",
            "SongInfo",
            "vector_to_blob",
            "blob_to_vector",
            "blob_checksum",
            "Catalog",
            "storage_error",
            "RepairReport",
            "check_catalog",
            "repair_catalog",
        ],
        "cluster": [
            "require_ray",
            "ModelSpec",
            "RayOptions",
            "connect",
            "SongIndexer",
            "shard_location",
            "run_scan",
        ],
        "history": ["history_path", "HistoryEntry", "History"],
        "index": [
            "IndexRebuiltWarning",
            "normalize_rows",
            "ivf_nlist",
            "VectorIndex",
            "space_file_stem",
            "IndexStore",
        ],
        "library": [
            "Library",
            "LibraryStatus",
            "Match",
            "QueryEmbedding",
            "SearchResult",
            "build_demo_library",
            "is_catalogue",
            "opens_read_only",
        ],
        "query_store": ["query_store_dir", "query_key", "StoredQuery", "QueryStore"],
        "scan": [
            "ScanReport",
            "walk_audio_files",
            "read_tags",
            "ScanItem",
            "PreparedSong",
            "IndexedSong",
            "prepare_song",
            "song_stems",
            "embed_prepared",
            "index_song",
            "commit_song",
            "Scanner",
            "embedding_vectors",
        ],
        "shards": [
            "songs_to_table",
            "row_to_song",
            "shard_filesystem",
            "prepare_shard_folder",
            "shard_files",
            "read_shard",
            "iter_rows",
            "IngestReport",
            "ingest_shards",
        ],
        "spaces": [
            "DEFAULT_SPACE",
            "DUPLICATE_MARGIN",
            "DUPLICATE_SIMILARITY",
            "INDEXED_SPACES",
            "NEEDS_VOCALS",
            "SEARCH_SPACES",
            "resolve_space",
        ],
    },
)

if TYPE_CHECKING:  # the names, for type checkers and readers
    from . import catalog, cluster, history, index, library, query_store, scan, shards, spaces
    from .catalog import (
        Catalog,
        Failure,
        FileRow,
        RepairReport,
        SongInfo,
        SongRecord,
        blob_checksum,
        blob_to_vector,
        check_catalog,
        repair_catalog,
        storage_error,
        vector_to_blob,
    )
    from .cluster import (
        ModelSpec,
        RayOptions,
        SongIndexer,
        connect,
        require_ray,
        run_scan,
        shard_location,
    )
    from .history import History, HistoryEntry, history_path
    from .index import (
        IndexRebuiltWarning,
        IndexStore,
        VectorIndex,
        ivf_nlist,
        normalize_rows,
        space_file_stem,
    )
    from .library import (
        Library,
        LibraryStatus,
        Match,
        QueryEmbedding,
        SearchResult,
        build_demo_library,
        is_catalogue,
        opens_read_only,
    )
    from .query_store import QueryStore, StoredQuery, query_key, query_store_dir
    from .scan import (
        IndexedSong,
        PreparedSong,
        ScanItem,
        Scanner,
        ScanReport,
        commit_song,
        embed_prepared,
        embedding_vectors,
        index_song,
        prepare_song,
        read_tags,
        song_stems,
        walk_audio_files,
    )
    from .shards import (
        IngestReport,
        ingest_shards,
        iter_rows,
        prepare_shard_folder,
        read_shard,
        row_to_song,
        shard_files,
        shard_filesystem,
        songs_to_table,
    )
    from .spaces import (
        DEFAULT_SPACE,
        DUPLICATE_MARGIN,
        DUPLICATE_SIMILARITY,
        INDEXED_SPACES,
        NEEDS_VOCALS,
        SEARCH_SPACES,
        resolve_space,
    )
