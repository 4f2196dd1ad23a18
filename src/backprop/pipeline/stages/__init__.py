"""One function per pipeline stage, the same for every front door (CLI and DVC, Hydra app).

Each is ``stage(settings, **paths, log=NO_LOG)``, with the paths named as the
stage's ports in ``registry.py``, and returns what it did, with a one-line
``summary`` for the command line.
"""
