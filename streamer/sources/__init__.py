"""Audio sources: files, microphones, raw PCM streams."""
