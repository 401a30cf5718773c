"""Audio in and out: decoding, hashes and fingerprints, export, recording and takes, query regions.

Every public name of the sub-modules is importable from here; the sub-modules load on
first use (``lazy_loader``), so importing the package costs nothing until a name is used.
"""

from typing import TYPE_CHECKING

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submodules=["decode", "export", "fingerprints", "recording", "region", "takes"],
    submod_attrs={
        "decode": [
            "Audio",
            "resample",
            "sniff_format",
            "probe_duration",
            "load_audio",
            "check_regular_file",
            "save_audio",
            "file_hash",
            "audio_hash",
        ],
        "export": [
            "export_audio",
            "safe_file_stem",
            "export_file_name",
            "unique_export_paths",
            "check_export_folder",
            "stem_paths",
            "cross_mix_tags",
            "export_cross_mix",
            "export_format",
        ],
        "fingerprints": [
            "fingerprint",
            "bit_error_rate",
            "best_offset",
            "same_recording",
            "to_blob",
            "from_blob",
        ],
        "recording": [
            "RecordingError",
            "RingBuffer",
            "TakeWriter",
            "repair_wav_header",
            "Trim",
            "find_voice",
            "trim_take",
            "click",
            "Metronome",
            "free_bytes",
            "can_write",
        ],
        "region": ["RegionError", "check_region", "crop", "crop_stems"],
        "takes": ["takes_dir", "Take", "TakeStore"],
    },
)

if TYPE_CHECKING:  # the names, for type checkers and readers
    from . import decode, export, fingerprints, recording, region, takes
    from .decode import (
        Audio,
        audio_hash,
        check_regular_file,
        file_hash,
        load_audio,
        probe_duration,
        resample,
        save_audio,
        sniff_format,
    )
    from .export import (
        check_export_folder,
        cross_mix_tags,
        export_audio,
        export_cross_mix,
        export_file_name,
        export_format,
        safe_file_stem,
        stem_paths,
        unique_export_paths,
    )
    from .fingerprints import (
        best_offset,
        bit_error_rate,
        fingerprint,
        from_blob,
        same_recording,
        to_blob,
    )
    from .recording import (
        Metronome,
        RecordingError,
        RingBuffer,
        TakeWriter,
        Trim,
        can_write,
        click,
        find_voice,
        free_bytes,
        repair_wav_header,
        trim_take,
    )
    from .region import RegionError, check_region, crop, crop_stems
    from .takes import Take, TakeStore, takes_dir
