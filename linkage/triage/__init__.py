"""Triage stage: explainable signals, cluster scores and routing to agencies.

In:  clusters (``report_id, cluster_id``) and the resolved tables (reports, mentions, links, entities).
Out: :func:`score_clusters` -> ranked clusters with score, signals (value + sentence + inputs) and reason;
     :func:`route` -> agencies per cluster with the rule that fired, or the reason it stayed unrouted.

Policy as data: signal weights and category severity in ``linkage/triage/scoring.toml``; routing rules in
``linkage/routing.toml`` (analysts edit a copy and pass it with ``--rules``).
"""
from linkage.triage.policy import ScoringPolicy, Term, load_scoring_policy
from linkage.triage.routing import DEFAULT_RULES, Rule, Rules, load_rules, route, route_one
from linkage.triage.scoring import build_contexts, data_now, score_clusters
from linkage.triage.signals import SIGNALS, ClusterContext, ReportInfo, Signal

__all__ = [
    "DEFAULT_RULES",
    "SIGNALS",
    "ClusterContext",
    "ReportInfo",
    "Rule",
    "Rules",
    "ScoringPolicy",
    "Signal",
    "Term",
    "build_contexts",
    "data_now",
    "load_rules",
    "load_scoring_policy",
    "route",
    "route_one",
    "score_clusters",
]
