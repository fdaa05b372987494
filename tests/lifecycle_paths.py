"""How to bring a fresh report into each status by legal steps only (shared by the lifecycle and feedback tests)."""
from __future__ import annotations

from linkage.feedback.lifecycle import current_status, set_status

#: status -> the (to, agency) steps that reach it from ``ontvangen``.
PATH_TO = {
    "ontvangen": [],
    "in_behandeling": [("in_behandeling", None)],
    "gekoppeld": [("gekoppeld", None)],
    "doorgezet": [("gekoppeld", None), ("doorgezet", "Politie")],
    "afgehandeld": [("in_behandeling", None), ("afgehandeld", None)],
    "niet_ontvankelijk": [("niet_ontvankelijk", None)],
}


def bring(store, report_id: str, status: str) -> None:
    """Move a fresh report to ``status`` through :data:`PATH_TO`, and check that it arrived."""
    for to, agency in PATH_TO[status]:
        set_status(store, report_id, to, agency=agency)
    assert current_status(store, report_id) == status
