"""emotrack training: corpora, models, training, evaluation and engine export (needs the [train] extra)."""
