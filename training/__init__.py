"""Corpus generation, triplet training and evaluation (headless)."""
