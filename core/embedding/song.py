"""Song embeddings in the four spaces of Kim et al. 2021 (4.2.1).

A song is cut into 3-second log-mel segments where its separated vocal is active
(:func:`core.embedding.features.select_segments`). Each segment of the mix goes through ``f_m`` and the
same segment of the vocal through ``f_v``; segment vectors are L2-normalised (the training
loss is a cosine distance, so only their direction carries meaning), averaged over the song and
normalised again:

- ``M``     = f_m(mix)                        256-d
- ``V``     = f_v(vocal)                      256-d
- ``[M+V]`` = normalise(M + V)                256-d (the paper's sum of the two vectors)
- ``[M,V]`` = concat(M, V) / sqrt(2)          512-d (unit norm, since M and V are)

All vectors are float32 with unit L2 norm, so inner product = cosine similarity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from core.audio.decode import Audio
from core.embedding.encoders import EncoderPair
from core.embedding.features import DEFAULT_MAX_SEGMENTS, song_segments
from core.errors import CrossmixError
from core.progress import CancelToken, Progress, ProgressFn, check_cancel

#: The spaces a song is embedded in, with their sizes for the default 256-d model.
SPACES: dict[str, int] = {"M": 256, "V": 256, "[M+V]": 256, "[M,V]": 512}
#: Segments per forward pass.
BATCH = 32

Vector = npt.NDArray[np.float32]


@dataclass
class SongEmbedding:
    """A song's vectors, float32, L2-normalised. ``V``/``MplusV``/``MV`` are ``None`` without a vocal.

    ``n_segments`` is how many segments were embedded and ``vocal_found`` whether they were
    chosen by vocal activity (``False``: no vocal, or too little of it, so all segments were
    used). ``model_id`` names the encoders.
    """

    M: Vector
    V: Vector | None
    MplusV: Vector | None
    MV: Vector | None
    n_segments: int = 0
    vocal_found: bool = False
    model_id: str = ""

    def space(self, name: str) -> Vector:
        """The vector of a space by its name: ``"M"``, ``"V"``, ``"[M+V]"`` or ``"[M,V]"``.

        Raises
        ------
        CrossmixError
            The space needs the vocal and the song was embedded without one, or the name is unknown.
        """
        table = {"M": self.M, "V": self.V, "[M+V]": self.MplusV, "[M,V]": self.MV}
        if name not in table:
            raise CrossmixError(f"Unknown embedding space {name!r}: use one of {', '.join(table)}.")
        vec = table[name]
        if vec is None:
            raise CrossmixError(f"This song was embedded without its vocal, so space {name} is not available.")
        return vec


def l2_normalise(x: npt.NDArray[np.floating], *, axis: int = -1) -> npt.NDArray[np.float32]:
    """Rows (``axis``) scaled to unit L2 norm; zero rows stay zero."""
    a = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(a, axis=axis, keepdims=True)
    out: npt.NDArray[np.float32] = (a / np.maximum(n, 1e-12)).astype(np.float32)
    return out


def combine(m: Vector, v: Vector | None) -> tuple[Vector, Vector | None, Vector | None, Vector | None]:
    """``M, V, [M+V], [M,V]`` from the (unnormalised) mean segment vectors ``m`` and ``v``."""
    M = l2_normalise(m)
    if v is None:
        return M, None, None, None
    V = l2_normalise(v)
    mpv = l2_normalise(M + V)
    mv = (np.concatenate([M, V], axis=-1) / np.sqrt(2.0)).astype(np.float32)
    return M, V, mpv, mv


@torch.no_grad()
def embed_segments(encoders: EncoderPair, segments: torch.Tensor, *, domain: str,
                   batch: int = BATCH, cancel: CancelToken | None = None) -> torch.Tensor:
    """Per-segment unit vectors ``(count, dim)`` of ``(count, 128, 129)`` log-mel segments.

    ``domain`` is ``"mix"`` (``f_m``) or ``"vocal"`` (``f_v``). Runs on the encoders' device.
    """
    net = encoders.f_m if domain == "mix" else encoders.f_v
    dev = encoders.device
    outs = []
    for a in range(0, segments.shape[0], batch):
        check_cancel(cancel, "embedding")
        out = net(segments[a:a + batch].to(dev, torch.float32))
        outs.append(torch.nn.functional.normalize(out.float(), dim=-1))
    return torch.cat(outs, dim=0)


def embed_song(*, mix: Audio, vocals: Audio | None, encoders: EncoderPair,
               device: torch.device | None = None, max_segments: int = DEFAULT_MAX_SEGMENTS,
               progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> SongEmbedding:
    """Embed one song in the spaces M, V, [M+V] and [M,V].

    Parameters
    ----------
    mix : Audio
        The song as heard (any rate and channel count).
    vocals : Audio or None
        Its separated vocal, same length as ``mix``; ``None`` gives only ``M`` (segments then
        are not chosen by vocal activity).
    encoders : EncoderPair
        Moved to ``device`` when given, otherwise used where it is.
    max_segments : int
        Cap on 3-s segments embedded, spread over the song (``0``: all).

    Returns
    -------
    SongEmbedding
        Unit vectors: ``M``, ``V``, ``MplusV`` are ``(256,)``, ``MV`` is ``(512,)``.
    """
    if device is not None:
        encoders.to(device)
    dev = encoders.device
    encoders.eval()
    check_cancel(cancel, "embedding")
    if progress:
        progress(Progress("embed", 0, 2, "steps", "log-mel"))
    mix_seg, voc_seg, found = song_segments(mix=mix, vocals=vocals, device=dev, max_segments=max_segments,
                                              frontend=encoders.frontend)
    check_cancel(cancel, "embedding")
    if progress:
        progress(Progress("embed", 1, 2, "steps", f"encoding {mix_seg.shape[0]} segments"))
    m = embed_segments(encoders, mix_seg, domain="mix", cancel=cancel).mean(0).cpu().numpy()
    v = None
    if voc_seg is not None:
        v = embed_segments(encoders, voc_seg, domain="vocal", cancel=cancel).mean(0).cpu().numpy()
    M, V, MpV, MV = combine(m, v)
    if progress:
        progress(Progress("embed", 2, 2, "steps", "done"))
    return SongEmbedding(M=M, V=V, MplusV=MpV, MV=MV, n_segments=int(mix_seg.shape[0]),
                         vocal_found=found, model_id=encoders.model_id)
