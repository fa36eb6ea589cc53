"""Corpora, labels, speaker-independent splits, datasets and augmentation for training."""
