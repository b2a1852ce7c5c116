"""The result folder: chunk files, curves, summaries and the manifest."""
