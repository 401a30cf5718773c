"""Where Crossmix keeps things. Resolved when called (never at import time)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "crossmix"


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def assets_dir() -> Path:
    """Shipped weights and demo material (``assets/`` beside ``core/``)."""
    return repo_root() / "assets"


def resources_dir() -> Path:
    return repo_root() / "resources"


def data_dir() -> Path:
    """User data (libraries, trained models). ``CROSSMIX_DATA_DIR`` overrides it."""
    env = os.environ.get("CROSSMIX_DATA_DIR")
    return Path(env) if env else Path(platformdirs.user_data_dir(APP_NAME))


def cache_dir() -> Path:
    """Re-creatable data (converted weights, stem cache). ``CROSSMIX_CACHE_DIR`` overrides it."""
    env = os.environ.get("CROSSMIX_CACHE_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir(APP_NAME))


def default_library_dir() -> Path:
    return data_dir() / "library"


def models_dir() -> Path:
    """Encoder checkpoints trained by the user."""
    return data_dir() / "models"
