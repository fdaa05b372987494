"""Report lifecycle and terugmelden (feedback to the reporter).

In:  the store after loading and routing; analysts' status changes.
Out: status history per report (:mod:`.lifecycle`), Dutch feedback messages for the reporting app
     (:mod:`.messages`), cluster cases and cluster history.
"""
from linkage.feedback.lifecycle import (
    STATUSES,
    TRANSITIONS,
    AdvanceSummary,
    TransitionError,
    active_case_clusters,
    advance_after_routing,
    advance_changed,
    check_transition,
    cluster_history,
    current_status,
    current_statuses,
    history,
    record_cluster_events,
    set_case,
    set_status,
)
from linkage.feedback.messages import FeedbackMessage, Templates, build_feedback, load_templates, mark_sent, write_messages

__all__ = [
    "STATUSES", "TRANSITIONS", "AdvanceSummary", "TransitionError", "active_case_clusters", "advance_after_routing",
    "advance_changed",
    "check_transition", "cluster_history", "current_status", "current_statuses", "history", "record_cluster_events",
    "set_case", "set_status", "FeedbackMessage", "Templates", "build_feedback", "load_templates", "mark_sent",
    "write_messages",
]
