"""Mentions to comparable records: one table per entity type with the columns that blocking and comparing use.

In:  mentions with the columns of :data:`linkage.model.STORED_MENTION_FIELDS` (strings or None/NaN), one
     entity type per row; optionally an extra ``national_id`` column (generic tables).
Out: :func:`prepare` gives, for one entity type, a DataFrame with ``mention_id`` and feature columns: text
     columns hold '' when unknown, never None. Person: ``first_name``, ``initials``, ``first_initial``,
     ``surname`` (without tussenvoegsel), ``part1``/``part2`` (double-name parts), ``surname_sorted``
     (the parts of a double name in sorted order, '' for a single name), ``last_part`` (the last part of
     the surname: a double name's second part, else the surname), ``single_name`` ('x', or '' for a
     double name), ``birth_date``
     (ISO), ``birth_year``, ``birth_date_sorted``, ``birth_month_day`` (``MM-DD``: finds a typo in the year), ``bsn`` (only when it passes the elfproef),
     ``surname_sound``, ``name_tokens_sorted``, ``national_id``, ``label``. Address: ``street``,
     ``house_number``, ``suffix``, ``postcode``, ``postcode4``, ``city``, ``street_sound``, ``label``.
     Business: ``name``, ``name_key``, ``name_tokens_sorted``, ``name_sound``, ``kvk``, ``label``.
     Simple types (vehicle, phone, bank_account, email): ``value``, ``label``.

Parsing runs once per distinct raw value combination, so repeated values cost nothing.
"""
from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pandas as pd

from linkage.normalise.addresses import parse_address
from linkage.normalise.business import normalise_business_name
from linkage.normalise.dates import parse_date
from linkage.normalise.identifiers import (
    normalise_email, normalise_iban, normalise_kvk, normalise_phone, normalise_plate, normalise_postcode,
)
from linkage.normalise.names import fold, given_field, parse_name, surname_field

SIMPLE_TYPES: dict[str, tuple[str, str, object]] = {
    # entity type -> (raw column, normalised column, normaliser for a missing normalised value)
    "vehicle": ("plate", "plate_norm", normalise_plate),
    "phone": ("phone", "phone_norm", normalise_phone),
    "bank_account": ("iban", "iban_norm", normalise_iban),
    "email": ("email", "email_norm", normalise_email),
}


#: The mention columns :func:`prepare` reads, per entity type (``mention_id`` and, in generic tables,
#: ``national_id`` besides): a reader may leave every other column out (:func:`linkage.store.embedded.mentions_of_type`).
INPUT_COLUMNS: dict[str, tuple[str, ...]] = {
    "person": ("name", "first_name", "last_name", "birth_date", "birth_date_norm", "bsn", "bsn_norm"),
    "address": ("address", "street", "house_number", "postcode", "city", "postcode_norm"),
    "business": ("business_name", "kvk", "kvk_norm"),
} | {etype: (raw, norm) for etype, (raw, norm, _) in SIMPLE_TYPES.items()}


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    """Column as object strings with '' for missing (absent columns give all '').

    An object column of Python strings (a store's mentions read as plain values) is stripped string by
    string; anything else goes through pandas' string dtype. Both give the same values (Python's
    ``str.strip`` and the string dtype's ``strip`` remove the same characters, checked over all of Unicode).

    >>> _col(pd.DataFrame({"a": [" x ", None, float("nan"), 7]}, dtype=object), "a").tolist()
    ['x', '', '', '7']
    """
    if name not in df.columns:
        return pd.Series([""] * len(df), index=df.index, dtype=object)
    s = df[name]
    if len(s) == 0:
        return pd.Series([], index=df.index, dtype=object)
    if s.dtype == object:
        values = s.tolist()
        if all(type(v) is str or v is None for v in values):
            out = np.empty(len(values), dtype=object)
            out[:] = ["" if v is None else v.strip() for v in values]
            return pd.Series(out, index=df.index, dtype=object)
    return s.astype("string").fillna("").str.strip().astype(object)


def _per_unique(frame: pd.DataFrame, func) -> list:
    """Apply ``func(*row)`` once per distinct row of ``frame``; return results in row order."""
    codes, results = _unique_results(frame, func)
    return [results[c] for c in codes]


def _unique_results(frame: pd.DataFrame, func) -> tuple[np.ndarray, list]:
    """``(codes, results)``: ``func(*row)`` once per distinct row of ``frame`` (``results``, in order of
    first appearance) and, per row, the index of its result (``codes``).

    Distinct rows are found from per-column codes combined two at a time (dense, so the combined number stays
    below ``rows**2``), not through a MultiIndex (a Categorical per column: a third of the cost at 100,000
    reports).

    >>> codes, results = _unique_results(pd.DataFrame({"a": ["x", "y", "x", "x"], "b": ["1", "1", "1", "2"]}),
    ...                                  lambda a, b: a + b)
    >>> codes.tolist(), results
    ([0, 1, 0, 2], ['x1', 'y1', 'x2'])
    """
    columns = [frame.iloc[:, j].to_numpy(dtype=object) for j in range(frame.shape[1])]
    if len(columns) == 1:
        codes, uniques = pd.factorize(columns[0], use_na_sentinel=False)
        return codes, [func(u) for u in np.asarray(uniques, dtype=object).tolist()]
    codes, _ = pd.factorize(columns[0], use_na_sentinel=False)
    for col in columns[1:]:
        col_codes, col_uniques = pd.factorize(col, use_na_sentinel=False)
        codes, _ = pd.factorize(codes.astype(np.int64) * len(col_uniques) + col_codes)
    first = np.unique(codes, return_index=True)[1]  # each distinct row's first position, in code order
    rows = zip(*(col[first].tolist() for col in columns))
    return codes, [func(*u) for u in rows]


def _per_unique_columns(frame: pd.DataFrame, func, names: list[str]) -> dict[str, np.ndarray]:
    """Like :func:`_per_unique` for a ``func`` that returns one tuple of ``len(names)`` values: per name an
    object array in row order (the same values as ``pd.DataFrame(_per_unique(...), columns=names)``,
    built from the distinct results without a tuple per row).

    >>> cols = _per_unique_columns(pd.DataFrame({"x": ["a", "b", "a"]}), lambda v: (v.upper(), v * 2), ["u", "d"])
    >>> cols["u"].tolist(), cols["d"].tolist()
    (['A', 'B', 'A'], ['aa', 'bb', 'aa'])
    """
    codes, results = _unique_results(frame, func)
    columns = zip(*results) if results else [()] * len(names)
    out = {}
    for name, values in zip(names, columns):
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        out[name] = arr[codes]
    return out


_SOUND_RULES = [
    (r"sch", "s"), (r"ch", "g"), (r"ph", "f"), (r"ck", "k"), (r"c(?=[eiy])", "s"), (r"c", "k"), (r"q", "k"),
    (r"x", "ks"), (r"dt\b", "t"), (r"d\b", "t"), (r"z", "s"), (r"v", "f"), (r"w", "v"), (r"y", "i"),
    (r"th", "t"), (r"h", ""),
]
_SOUND_RES = [(re.compile(a), b) for a, b in _SOUND_RULES]
_VOWELS = re.compile(r"[aeiou]")
_REPEATS = re.compile(r"(.)\1+")
_NOT_LETTER = re.compile(r"[^a-z]")
_NOT_ALNUM = re.compile(r"[^a-z0-9]")
_POSTCODE_WORD = re.compile(r"^\d{4}[A-Z]{2}$")


@lru_cache(maxsize=1 << 18)
def _sound(text: str, length: int) -> str:
    for rx, rep in _SOUND_RES:
        text = rx.sub(rep, text)
    if not text:
        return ""
    head, rest = text[0], _VOWELS.sub("", text[1:])
    rest = _REPEATS.sub(r"\1", rest)
    return (head + rest)[:length]


def sound_key(value: object, length: int = 6) -> str:
    """A rough Dutch phonetic key: the first letter, then the consonant skeleton with look-alike sounds
    merged (``ch``/``g``, ``v``/``f``, ``z``/``s``, ``dt``/``d``/``t``, ``c``/``k``, ``ij``/``y``/``i``).

    >>> sound_key("Schouten") == sound_key("Schoute"), sound_key("Visser") == sound_key("Fisser")
    (False, True)
    >>> sound_key("Smit") == sound_key("Smid"), sound_key("")
    (True, '')
    """
    if isinstance(value, str):
        return _sound_of_text(value, length)
    text = _NOT_LETTER.sub("", fold(value))
    return _sound(text, length) if text else ""


@lru_cache(maxsize=1 << 18)
def _sound_of_text(value: str, length: int) -> str:
    text = _NOT_LETTER.sub("", fold(value))
    return _sound(text, length) if text else ""


def _valid_bsn(values: pd.Series) -> pd.Series:
    """Keep 9-digit BSNs passing the elfproef; others become ''. Vectorised."""
    arr = values.to_numpy(dtype=object)
    ok = np.array([isinstance(v, str) and len(v) == 9 and v.isdigit() for v in arr], dtype=bool)
    out = np.full(len(arr), "", dtype=object)
    if ok.any():
        digits = np.array([[ord(ch) - 48 for ch in v] for v in arr[ok]], dtype=np.int64).reshape(-1, 9)
        weights = np.array([9, 8, 7, 6, 5, 4, 3, 2, -1])
        total = digits @ weights
        valid = (total % 11 == 0) & (digits.sum(axis=1) > 0)
        idx = np.flatnonzero(ok)[valid]
        out[idx] = arr[idx]
    return pd.Series(out, index=values.index, dtype=object)


def _date_parts(iso: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(year, month, day) int arrays from ISO dates; 0 where unknown."""
    ok = iso.str.match(r"^\d{4}-\d{2}-\d{2}$").fillna(False).astype(bool)
    parts = []
    for a, b in ((0, 4), (5, 7), (8, 10)):
        piece = iso.str[a:b].where(ok, "0")
        parts.append(pd.to_numeric(piece, errors="coerce").fillna(0).to_numpy(dtype=np.int32))
    return parts[0], parts[1], parts[2]


def _date_features(iso: np.ndarray) -> dict[str, np.ndarray]:
    """``by``, ``bm``, ``bd`` (int32, 0 unknown), ``birth_year``, ``birth_date_sorted`` (year, then the smaller
    and the larger of month and day) and ``birth_month_day`` per ISO date (object array, '' unknown),
    worked out once per distinct date.

    >>> f = _date_features(np.array(["1985-07-03", "", "1985-07-03"], dtype=object))
    >>> f["by"].tolist(), f["birth_date_sorted"].tolist(), f["birth_month_day"].tolist()
    ([1985, 0, 1985], ['1985-03-07', '', '1985-03-07'], ['07-03', '', '07-03'])
    """
    codes, uniques = pd.factorize(iso, use_na_sentinel=False)
    dates = pd.Series(np.asarray(uniques, dtype=object), dtype=object)
    y, m, d = _date_parts(dates)
    has = y > 0
    lo, hi = np.minimum(m, d), np.maximum(m, d)
    sorted_key = pd.Series(y).astype(str) + "-" + pd.Series(lo).astype(str).str.zfill(2) + "-" + pd.Series(hi).astype(str).str.zfill(2)
    month_day = pd.Series(m).astype(str).str.zfill(2) + "-" + pd.Series(d).astype(str).str.zfill(2)
    per_date = {
        "by": y, "bm": m, "bd": d,
        "birth_year": np.where(has, y.astype(str), "").astype(object),
        "birth_date_sorted": np.where(has, sorted_key.to_numpy(dtype=object), "").astype(object),
        "birth_month_day": np.where(has & (m > 0) & (d > 0), month_day.to_numpy(dtype=object), "").astype(object),
    }
    return {name: values[codes] for name, values in per_date.items()}


def _iso_date(raw: object) -> str:
    parsed = parse_date(raw)
    return parsed.isoformat() if parsed else ""


def prepare(mentions: pd.DataFrame, entity_type: str) -> pd.DataFrame:
    """Feature table for the mentions of one entity type (rows in the input order).

    >>> df = pd.DataFrame([{"mention_id": "m1", "entity_type": "person", "name": "Vries, J. de",
    ...                     "birth_date_norm": "1985-03-07", "bsn_norm": "111222333"}])
    >>> r = prepare(df, "person").iloc[0]
    >>> (r.initials, r.surname, r.birth_date_sorted, r.bsn)
    ('j', 'vries', '1985-03-07', '111222333')
    """
    df = mentions.reset_index(drop=True)
    out = pd.DataFrame({"mention_id": _col(df, "mention_id")})
    if entity_type == "person":
        _person(df, out)
    elif entity_type == "address":
        _address(df, out)
    elif entity_type == "business":
        _business(df, out)
    elif entity_type in SIMPLE_TYPES:
        raw_col, norm_col, normaliser = SIMPLE_TYPES[entity_type]
        norm, raw = _col(df, norm_col), _col(df, raw_col)
        fallback = _per_unique(pd.DataFrame({"r": raw}), lambda v: normaliser(v) or re.sub(r"\s+", " ", v.strip().lower()))
        out["value"] = np.where(norm != "", norm, np.array(fallback, dtype=object))
        out["label"] = out["value"]
    else:
        raise ValueError(f"unknown entity type {entity_type!r}")
    if "national_id" in df.columns:
        out["national_id"] = _col(df, "national_id").str.upper().str.replace(r"[\s\-.]", "", regex=True)
    elif entity_type in ("person", "address", "business"):
        out["national_id"] = ""
    return out


_PERSON_NAME_COLUMNS = ["first_name", "initials", "surname", "part1", "part2", "surname_sorted", "surname_sound",
                        "name_tokens_sorted", "last_part", "single_name", "_display"]


def _front(given: tuple[str, ...], initials: str) -> str:
    """The first part of a display name: the given names, else the initials ("J. P.")."""
    return " ".join(given) or " ".join(ch.upper() + "." for ch in initials)


def _surname_columns(parts: tuple[str, ...]) -> tuple:
    """``part1, part2, surname_sorted, surname_sound, last_part, single_name`` of a surname's parts."""
    return (parts[0] if parts else "", parts[1] if len(parts) > 1 else "",
            "-".join(sorted(parts)) if len(parts) > 1 else "", sound_key(parts[0]) if parts else "",
            parts[-1] if parts else "", "" if len(parts) > 1 else "x")


def _person_name(n: str, f: str, last: str) -> tuple:
    """The name columns (:data:`_PERSON_NAME_COLUMNS`) of one mention's name fields."""
    p = parse_name(full=n, first=f, last=last) if (f or last) else parse_name(full=n)
    given = p.given[0] if p.given else ""
    display = " ".join(x for x in (_front(p.given, p.initials), p.surname_full) if x)
    tokens = " ".join(sorted(x for x in (given, p.surname) if x)) if given and p.surname else ""
    part1, part2, surname_sorted, surname_sound, last_part, single = _surname_columns(p.surname_parts)
    return (given, p.initials, p.surname, part1, part2, surname_sorted, surname_sound, tokens, last_part, single,
            display)


def _object_array(values: list) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def _person_names(names: pd.DataFrame) -> dict[str, np.ndarray]:
    """The name columns of every row of ``names`` (columns ``n``, ``f``, ``l``: full name, first name, surname),
    as :func:`_person_name` gives them row by row.

    A mention with separate first-name and surname fields is worked out from each field once per distinct
    value (:func:`linkage.normalise.names.given_field`, :func:`~linkage.normalise.names.surname_field`) and
    the columns that need both (display name, sorted name tokens) are joined for all rows at once; a full
    name, a first-name field that hands words to the surname ("Jan de") and a field the parser fails on go
    through :func:`_person_name`, once per distinct combination.

    >>> names = pd.DataFrame({"n": ["", "Vries, J. de", ""], "f": ["Jan", "", "Jan de"], "l": ["Smit", "", "Vries"]})
    >>> cols = _person_names(names)
    >>> all(tuple(cols[c][i] for c in _PERSON_NAME_COLUMNS) == _person_name(*names.iloc[i]) for i in range(3))
    True
    """
    n_rows = len(names)
    f_all, l_all = names["f"].to_numpy(dtype=object), names["l"].to_numpy(dtype=object)
    fields = np.flatnonzero((f_all != "") | (l_all != ""))
    out = {c: np.empty(n_rows, dtype=object) for c in _PERSON_NAME_COLUMNS}
    fast = np.zeros(n_rows, dtype=bool)
    if len(fields):
        fcode, funiq = pd.factorize(f_all[fields])
        lcode, luniq = pd.factorize(l_all[fields])
        g_first, g_initials, g_front, g_ok = [], [], [], []
        for f in funiq.tolist():
            try:
                given, initials, moved = given_field(f)
            except Exception:  # the row-by-row path gives what parse_name gives then
                given, initials, moved = (), "", ("?",)
            g_first.append(given[0] if given else "")
            g_initials.append(initials)
            g_front.append(_front(given, initials))
            g_ok.append(not moved)  # words handed to the surname: the surname depends on both fields
        s_cols: dict[str, list] = {c: [] for c in ("surname", "part1", "part2", "surname_sorted", "surname_sound",
                                                  "last_part", "single_name", "full")}
        s_ok = []
        for last in luniq.tolist():
            try:
                _, core, parts, sfull = surname_field(last)
                ok = True
            except Exception:
                core, parts, sfull, ok = "", (), "", False
            s_ok.append(ok)
            for c, v in zip(s_cols, (core, *_surname_columns(parts), sfull)):
                s_cols[c].append(v)
        ok = np.asarray(g_ok, dtype=bool)[fcode] & np.asarray(s_ok, dtype=bool)[lcode]
        # fields of blanks only (not after _col, which strips; kept for the row-by-row contract): the parser
        # reads the full name then
        f_blank = np.array([not f.strip() for f in funiq.tolist()], dtype=bool)
        l_blank = np.array([not last.strip() for last in luniq.tolist()], dtype=bool)
        ok &= ~(f_blank[fcode] & l_blank[lcode])
        rows, fc, lc = fields[ok], fcode[ok], lcode[ok]
        fast[rows] = True
        first = _object_array(g_first)[fc]
        surname = _object_array(s_cols["surname"])[lc]
        out["first_name"][rows] = first
        out["initials"][rows] = _object_array(g_initials)[fc]
        for c in ("surname", "part1", "part2", "surname_sorted", "surname_sound", "last_part", "single_name"):
            out[c][rows] = surname if c == "surname" else _object_array(s_cols[c])[lc]
        both = (first != "") & (surname != "")
        tokens = np.where(first <= surname, first + " " + surname, surname + " " + first)
        out["name_tokens_sorted"][rows] = np.where(both, tokens, "")
        front, full = _object_array(g_front)[fc], _object_array(s_cols["full"])[lc]
        out["_display"][rows] = np.where((front != "") & (full != ""), front + " " + full, front + full)
    rest = np.flatnonzero(~fast)
    if len(rest):
        parsed = _per_unique_columns(names.iloc[rest], _person_name, _PERSON_NAME_COLUMNS)
        for c in _PERSON_NAME_COLUMNS:
            out[c][rest] = parsed[c]
    return out


def _person(df: pd.DataFrame, out: pd.DataFrame) -> None:
    names = pd.DataFrame({"n": _col(df, "name"), "f": _col(df, "first_name"), "l": _col(df, "last_name")})
    parsed = _person_names(names)
    for c in _PERSON_NAME_COLUMNS:
        out[c] = parsed[c]
    out["first_initial"] = out["initials"].str[:1]
    iso = _col(df, "birth_date_norm")
    raw = _col(df, "birth_date")
    need = (iso == "") & (raw != "")
    if need.any():
        iso = iso.copy()
        iso[need] = _per_unique(pd.DataFrame({"r": raw[need]}), _iso_date)
    out["birth_date"] = iso.to_numpy(dtype=object)
    for name, values in _date_features(iso.to_numpy(dtype=object)).items():
        out[name] = values
    out["bsn"] = _valid_bsn(_col(df, "bsn_norm").where(_col(df, "bsn_norm") != "", _col(df, "bsn").str.replace(r"\D", "", regex=True)))
    disp = out["_display"].str.title()
    out["label"] = np.where(out["birth_date"] != "", disp + " (" + out["birth_date"] + ")", disp).astype(object)
    del out["_display"]


def _address(df: pd.DataFrame, out: pd.DataFrame) -> None:
    raw = pd.DataFrame({c: _col(df, c) for c in ("address", "street", "house_number", "postcode", "city")})

    def parse(a: str, s: str, h: str, p: str, c: str) -> tuple:
        ad = parse_address(a, s, h, p, c)
        key = _NOT_ALNUM.sub("", ad.street)
        number = "" if ad.house_number is None else str(ad.house_number)
        return key, number, ad.suffix, ad.postcode, ad.city, sound_key(ad.street, 8), _title_address(ad.canonical())

    cols = ["street", "house_number", "suffix", "postcode", "city", "street_sound", "label"]
    parsed = _per_unique_columns(raw, parse, cols)
    for c in cols[:-1]:
        out[c] = parsed[c]
    pc_norm = _col(df, "postcode_norm")
    out["postcode"] = np.where(pc_norm != "", pc_norm, out["postcode"]).astype(object)
    out["postcode4"] = out["postcode"].str[:4]
    out["label"] = parsed["label"]


def _title_address(canon: str) -> str:
    """``kerkstraat 12a, 1234AB amsterdam`` -> ``Kerkstraat 12a, 1234AB Amsterdam``."""
    return " ".join(w[:1].upper() + w[1:] if w[:1].isalpha() and not _POSTCODE_WORD.match(w) else w
                    for w in canon.split(" "))


def _business(df: pd.DataFrame, out: pd.DataFrame) -> None:
    names = _col(df, "business_name")

    def parse(n: str) -> tuple:
        norm = normalise_business_name(n) or ""
        tokens = norm.split()
        return norm, norm.replace(" ", ""), " ".join(sorted(tokens)), sound_key(tokens[0], 6) if tokens else "", n.strip()

    cols = ["name", "name_key", "name_tokens_sorted", "name_sound", "_raw"]
    parsed = _per_unique_columns(pd.DataFrame({"n": names}), parse, cols)
    for c in cols:
        out[c] = parsed[c]
    kvk = _col(df, "kvk_norm")
    kvk = kvk.where(kvk != "", _col(df, "kvk").map(lambda v: normalise_kvk(v) or ""))
    out["kvk"] = kvk.where(kvk.str.len() == 8, "").to_numpy(dtype=object)
    out["label"] = np.where(out["kvk"] != "", out["_raw"] + " (KvK " + out["kvk"] + ")", out["_raw"]).astype(object)
    del out["_raw"]


def normalise_mention_values(row: dict) -> dict:
    """Fill the normalised identifier columns of one raw mention row (for callers without a loader).

    >>> normalise_mention_values({"postcode": "1234 ab", "birth_date": "7-3-1985"})["postcode_norm"]
    '1234AB'
    """
    from linkage.normalise.identifiers import normalise_bsn

    out = dict(row)
    pairs = {"bsn": normalise_bsn, "postcode": normalise_postcode, "kvk": normalise_kvk, "plate": normalise_plate,
             "phone": normalise_phone, "iban": normalise_iban, "email": normalise_email}
    for field_name, func in pairs.items():
        if out.get(f"{field_name}_norm") in (None, "") and out.get(field_name) not in (None, ""):
            out[f"{field_name}_norm"] = func(out.get(field_name))
    if out.get("birth_date_norm") in (None, "") and out.get("birth_date") not in (None, ""):
        parsed = parse_date(out.get("birth_date"))
        out["birth_date_norm"] = parsed.isoformat() if parsed else None
    return out
