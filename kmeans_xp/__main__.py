"""``python -m kmeans_xp``: the same command line as ``kmeans-xp``."""

from .cli import main

__all__ = []

raise SystemExit(main())
