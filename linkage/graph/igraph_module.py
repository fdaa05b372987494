"""igraph without its matplotlib import.

``import igraph`` imports ``igraph.drawing``, which imports ``matplotlib.pyplot`` whenever matplotlib is
installed: ~2 s of every ``linkage`` command that clusters, for plotting code linkage never calls (pictures
use matplotlib directly, not igraph's drawing).

Contract: :func:`load_igraph` returns the ``igraph`` module. If neither igraph nor matplotlib has been
imported yet, igraph is imported with matplotlib hidden (igraph then keeps its own placeholder for plotting);
matplotlib itself stays importable afterwards, unchanged, for any code that uses it. If either is already
imported, this is a plain ``import igraph``.
"""
from __future__ import annotations

import sys
from types import ModuleType


def load_igraph() -> ModuleType:
    """The ``igraph`` module, imported without ``matplotlib`` when that can still be avoided."""
    if "igraph" in sys.modules or "matplotlib" in sys.modules:
        import igraph
        return igraph
    sys.modules["matplotlib"] = None  # type: ignore[assignment]  # makes ``import matplotlib`` fail inside igraph
    try:
        import igraph
    finally:
        if sys.modules.get("matplotlib", 0) is None:
            del sys.modules["matplotlib"]
    return igraph
