"""The map of linkage: one function per stage, called in order.

    load -> normalise -> block -> compare/score -> resolve entities -> build graph -> communities
         -> score/route clusters -> store (embedded or Neo4j) -> feedback

In:  input files and a store path. Out: the store filled stage by stage; each stage returns a summary.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Optional, Sequence

from linkage.settings import load_settings
from linkage.store import EmbeddedStore


def load_stage(files: Sequence[Path], store_path: Path, settings_path: Optional[Path] = None,
               mapping: Optional[Path] = None, progress_factory: Optional[Callable] = None):
    """Load ``files`` into the store at ``store_path``; returns a :class:`loaders.LoadSummary`."""
    from loaders import load_files

    settings = load_settings(settings_path)
    with EmbeddedStore(store_path) as store:
        bar_cm = progress_factory() if progress_factory else nullcontext(None)
        with bar_cm as bar:
            tasks: dict[str, int] = {}

            def progress(label: str, n: int) -> None:
                if bar is None:
                    return
                if label not in tasks:
                    tasks[label] = bar.add_task(f"loading {Path(label).name}", total=None)
                bar.advance(tasks[label], n)

            return load_files(files, store, settings, mapping, progress)
