"""Normalisation: turn as-given values into one canonical form each (names, addresses, identifiers, dates).

In: raw strings. Out: canonical strings/objects, or None when absent or unparseable. Never raises.
"""
