"""Embeddings: features, the vocal/mix encoder pair, song embeddings, the GE2E (resemblyzer) peer, per-space quality.

Every public name of the sub-modules is importable from here; the sub-modules load on
first use (``lazy_loader``), so importing the package costs nothing until a name is used.
"""

from typing import TYPE_CHECKING

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submodules=["encoders", "features", "ge2e", "mel", "quality", "song"],
    submod_attrs={
        "encoders": [
            "EncoderConfig",
            "Backbone",
            "GE2EHead",
            "EncoderPair",
            "default_encoders_path",
            "load_default_encoders",
        ],
        "features": [
            "mel_power",
            "compress",
            "log_mel",
            "to_feature_rate",
            "segment_starts",
            "cut_segments",
            "segment_levels_db",
            "active_segments",
            "spread",
            "select_segments",
            "song_segments",
            "stems_levels_db",
        ],
        "ge2e": ["weights_path", "backbone_sha256", "GE2E", "normalise_level", "segment_mels"],
        "mel": [],
        "quality": [
            "SpaceQuality",
            "Quality",
            "from_report",
            "quality_for",
            "library_has_vocals",
            "auto_space",
            "quality_for_choice",
        ],
        "song": ["SongEmbedding", "l2_normalise", "combine", "embed_segments", "embed_song"],
    },
)

if TYPE_CHECKING:  # the names, for type checkers and readers
    from . import encoders, features, ge2e, mel, quality, song
    from .encoders import (
        Backbone,
        EncoderConfig,
        EncoderPair,
        GE2EHead,
        default_encoders_path,
        load_default_encoders,
    )
    from .features import (
        active_segments,
        compress,
        cut_segments,
        log_mel,
        mel_power,
        segment_levels_db,
        segment_starts,
        select_segments,
        song_segments,
        spread,
        stems_levels_db,
        to_feature_rate,
    )
    from .ge2e import GE2E, backbone_sha256, normalise_level, segment_mels, weights_path
    from .quality import (
        Quality,
        SpaceQuality,
        auto_space,
        from_report,
        library_has_vocals,
        quality_for,
        quality_for_choice,
    )
    from .song import SongEmbedding, combine, embed_segments, embed_song, l2_normalise
