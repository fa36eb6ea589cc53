"""Whisper-base's encoder as a frozen speech backbone: pinned weights, the graph, pooled embeddings, heads."""
