"""Crossmix desktop app (PySide6): the Qt shell around the headless engine in ``core``."""
