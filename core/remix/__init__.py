"""Cross-mixes: tempo/key analysis, a voice's tempo, beat-aligned rendering.

Every public name of the sub-modules is importable from here; the sub-modules load on
first use (``lazy_loader``), so importing the package costs nothing until a name is used.
"""

from typing import TYPE_CHECKING

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submodules=["analysis", "render", "vocal_tempo"],
    submod_attrs={
        "analysis": [
            "Analysis",
            "key_name",
            "parse_key",
            "analyze",
            "integrated_loudness",
            "estimate_key",
        ],
        "render": [
            "RemixOptions",
            "CompatibilityReport",
            "tempo_multiplier",
            "needed_key_shift",
            "key_shift",
            "key_distance",
            "BeatPlan",
            "plan_beats",
            "query_to_match_time",
            "match_to_query_time",
            "compatibility",
            "CrossMix",
            "render_cross_mix",
            "most_vocal_active_start",
            "true_peak_gain",
        ],
        "vocal_tempo": [
            "TempoEstimate",
            "onset_envelope",
            "check_bpm",
            "fit_first_beat",
            "onset_times",
            "refine_grid",
            "grid_confidence",
            "estimate_vocal_tempo",
            "sharpen_phase",
            "beat_grid",
            "grid_analysis",
            "tap_bpm",
            "analyze_query",
            "given_grid",
        ],
    },
)

if TYPE_CHECKING:  # the names, for type checkers and readers
    from . import analysis, render, vocal_tempo
    from .analysis import Analysis, analyze, estimate_key, integrated_loudness, key_name, parse_key
    from .render import (
        BeatPlan,
        CompatibilityReport,
        CrossMix,
        RemixOptions,
        compatibility,
        key_distance,
        key_shift,
        match_to_query_time,
        most_vocal_active_start,
        needed_key_shift,
        plan_beats,
        query_to_match_time,
        render_cross_mix,
        tempo_multiplier,
        true_peak_gain,
    )
    from .vocal_tempo import (
        TempoEstimate,
        analyze_query,
        beat_grid,
        check_bpm,
        estimate_vocal_tempo,
        fit_first_beat,
        given_grid,
        grid_analysis,
        grid_confidence,
        onset_envelope,
        onset_times,
        refine_grid,
        sharpen_phase,
        tap_bpm,
    )
