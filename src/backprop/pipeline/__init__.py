"""The pipeline: its stages and their registry, settings, files, figures, and run folders."""
