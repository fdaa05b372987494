"""Pictures, exploration helpers and hand-over dossiers: what people look at instead of tables of ids.

In:  an :class:`~linkage.store.EmbeddedStore` after ``linkage run``.
Out: network pictures of one cluster (``pictures``: PNG/SVG via matplotlib, self-contained interactive
     HTML), the aggregations behind the notebooks (``explore``), and per-agency hand-over dossiers
     (``dossier``: self-contained HTML, PDF when headless Chromium is installed).
"""
from __future__ import annotations

__all__ = ["pictures", "dossier", "explore"]
