"""Crossmix engine: decoding, separation, embedding, library, remix. Never imports Qt."""

__version__ = "0.1.0"
