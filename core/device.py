"""Choose the compute device once, at the edge (settings or CLI flag), and pass it down."""

from __future__ import annotations

from typing import Literal

import torch

from core.errors import DeviceError

DeviceName = Literal["auto", "cpu", "cuda"]


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda"`` (or ``"cuda:N"``) into a :class:`torch.device`.

    ``auto`` is CUDA when a GPU is usable, otherwise CPU (never an error).
    """
    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                "CUDA was requested but no usable NVIDIA GPU was found; use --device cpu or auto."
            )
        return torch.device(name)
    raise DeviceError(f"Unknown device {name!r}: use auto, cpu or cuda.")


def usable_device(name: str = "auto") -> tuple[torch.device, DeviceError | None]:
    """The device ``name`` names, or, when it cannot be used, the CPU and the reason.

    For a front end that must run anyway (the app's Compute device setting): it tells the
    user the reason in its own terms. The command line uses :func:`resolve_device` and stops.
    """
    try:
        return resolve_device(name), None
    except DeviceError as exc:
        return torch.device("cpu"), exc


def describe_devices() -> str:
    """One line saying what was found, for the settings panel and ``--help``."""
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return "CUDA: " + ", ".join(names)
    return f"CPU only ({torch.get_num_threads()} threads); no CUDA GPU found"
