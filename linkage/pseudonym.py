"""Optional pseudonymisation of BSNs: a keyed hash instead of the number, still matching exactly.

In:  a mention record from the loader (``bsn`` as given, ``bsn_norm`` as normalised) and the key in
     ``$LINKAGE_PSEUDONYM_KEY``.
Out: the same record with ``bsn`` and ``bsn_norm`` both replaced by ``h:`` + HMAC-SHA256(key, the
     normalised BSN) in hex, so the plain number is never stored and equal BSNs (in any spelling)
     still give equal values. Without the key, records pass through unchanged.

A raw value that does not normalise to a BSN is hashed as given (stripped), marked ``h:raw:``, so it
still matches only itself. Values that already carry the prefix are left alone (idempotent).
Everyone who loads into one store must use the same key; :func:`check_key` guards that.

>>> rec = {"bsn": "1112.22.333", "bsn_norm": "111222333"}
>>> out = pseudonymise_mention(dict(rec), key=b"secret")
>>> out["bsn"] == out["bsn_norm"] == pseudonymise_bsn("111222333", b"secret")
True
>>> out["bsn_norm"].startswith("h:") and "111222333" not in out["bsn_norm"]
True
>>> pseudonymise_mention(dict(rec), key=None) == rec
True
"""
from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any, MutableMapping

from linkage.errors import ConfigError
from linkage.normalise.identifiers import normalise_bsn

ENV_KEY = "LINKAGE_PSEUDONYM_KEY"
PREFIX = "h:"
RAW_PREFIX = "h:raw:"
_META_KEY = "pseudonym_key_check"


def key_from_env() -> bytes | None:
    """The key from ``$LINKAGE_PSEUDONYM_KEY`` as bytes, or None when unset or empty."""
    value = os.environ.get(ENV_KEY, "")
    return value.encode("utf-8") if value else None


def is_pseudonym(value: Any) -> bool:
    """True for a value this module produced.

    >>> is_pseudonym("h:ab12"), is_pseudonym("111222333"), is_pseudonym(None)
    (True, False, False)
    """
    return isinstance(value, str) and value.startswith(PREFIX)


def _digest(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def pseudonymise_bsn(value: Any, key: bytes | None = None) -> str | None:
    """The keyed hash of a BSN (normalised first, so ``1112.22.333`` and ``111222333`` agree).

    ``key`` defaults to ``$LINKAGE_PSEUDONYM_KEY``; without any key the value is returned as it is
    (None stays None). Use this also to look up a BSN an analyst types in.

    >>> pseudonymise_bsn("111222333", b"k") == pseudonymise_bsn("1112.22.333", b"k")
    True
    >>> pseudonymise_bsn("111222333", b"k") == pseudonymise_bsn("111222333", b"other")
    False
    """
    key = key if key is not None else key_from_env()
    if value is None or key is None:
        return value
    if is_pseudonym(value):
        return value
    norm = normalise_bsn(value)
    if norm is not None:
        return PREFIX + _digest(key, norm)
    text = str(value).strip()
    if not text:
        return None
    return RAW_PREFIX + _digest(key, "raw:" + text)


def pseudonymise_mention(record: MutableMapping[str, Any], key: bytes | None = None) -> MutableMapping[str, Any]:
    """Replace ``bsn`` and ``bsn_norm`` of a mention record by keyed hashes (in place; also returned).

    ``bsn_norm`` becomes the hash of the normalised number and ``bsn`` the same value, so the plain
    number appears nowhere in the record. Without a key (argument or environment) nothing changes.
    """
    key = key if key is not None else key_from_env()
    if key is None:
        return record
    norm = record.get("bsn_norm")
    raw = record.get("bsn")
    if norm not in (None, ""):
        hashed = pseudonymise_bsn(norm, key)
        record["bsn_norm"] = hashed
        record["bsn"] = hashed
    elif raw not in (None, ""):
        record["bsn"] = pseudonymise_bsn(raw, key)
    return record


def key_fingerprint(key: bytes) -> str:
    """A short check value of a key (not the key; cannot be turned back into it)."""
    return _digest(key, "linkage-pseudonym-key-check")[:16]


def check_key(store, key: bytes | None = None) -> None:
    """Make sure a store is always loaded with the same key (or always without one).

    The first pseudonymised load records the key's fingerprint in the store's ``meta``; a later load
    with another key, or without a key into a pseudonymised store, raises.

    Raises
    ------
    ConfigError
        When the key differs from the one the store was filled with, or is missing.
    """
    key = key if key is not None else key_from_env()
    stored = store.get_meta(_META_KEY)
    if key is None:
        if stored:
            raise ConfigError(
                f"This store holds pseudonymised BSNs; set {ENV_KEY} to the same key before loading or matching."
            )
        return
    mark = key_fingerprint(key)
    if stored is None:
        plain = store.conn.execute(
            "SELECT 1 FROM mentions WHERE bsn_norm IS NOT NULL AND bsn_norm NOT LIKE 'h:%' LIMIT 1"
        ).fetchone()
        if plain:
            raise ConfigError(
                f"This store already holds plain BSNs; {ENV_KEY} would make new ones unmatchable. Load into a "
                "new store, or unset the key."
            )
        store.set_meta(_META_KEY, mark)
    elif stored != mark:
        raise ConfigError(f"{ENV_KEY} differs from the key this store was filled with; BSNs would not match.")
