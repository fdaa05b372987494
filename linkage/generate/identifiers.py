"""Valid, unique Dutch identifiers for synthetic entities.

In:  a ``random.Random`` (for the per-run scramble) and a running counter per allocator.
Out: canonical identifier strings: BSN (elfproef), IBAN (mod 97, NL bank code, elfproef account), KvK
     (8 digits), kenteken (sidecodes), phone numbers (E.164), postcodes (``1234AB``).

Uniqueness costs no memory: each allocator walks a counter through a bijective affine scramble of its
number space, so two entities never receive the same value and consecutive entities look unrelated.
"""
from __future__ import annotations

import math
import random

#: Weights of the BSN elfproef (the last digit counts -1).
BSN_WEIGHTS: tuple[int, ...] = (9, 8, 7, 6, 5, 4, 3, 2, -1)

#: Letters used on modern Dutch licence plates (no vowels, no C, M, Q, W).
PLATE_LETTERS = "BDFGHJKLNPRSTVXZ"

#: Sidecodes (L = letter, 9 = digit) with how common each is among cars seen today.
PLATE_SIDECODES: tuple[tuple[str, float], ...] = (
    ("LL-99-LL", 0.02),
    ("LL-LL-99", 0.03),
    ("99-LL-LL", 0.05),
    ("99-LLL-9", 0.14),
    ("9-LLL-99", 0.16),
    ("LL-999-L", 0.18),
    ("L-999-LL", 0.17),
    ("LLL-99-L", 0.13),
    ("L-99-LLL", 0.08),
    ("9-LL-999", 0.04),
)

#: Letters used in postcodes (F, I, O, Q, U and Y are not used) and the letter pairs never issued.
POSTCODE_LETTERS = "ABCDEGHJKLMNPRSTVWXZ"
POSTCODE_BANNED_PAIRS = frozenset({"SA", "SD", "SS"})
POSTCODE_PAIRS: tuple[str, ...] = tuple(
    a + b for a in POSTCODE_LETTERS for b in POSTCODE_LETTERS if a + b not in POSTCODE_BANNED_PAIRS
)

#: Bank codes with their market share (roughly).
BANKS: tuple[tuple[str, float], ...] = (
    ("INGB", 0.34),
    ("RABO", 0.28),
    ("ABNA", 0.22),
    ("SNSB", 0.06),
    ("ASNB", 0.03),
    ("TRIO", 0.02),
    ("KNAB", 0.02),
    ("BUNQ", 0.03),
)

#: Geographic area codes (three digits including the leading 0).
AREA_CODES: tuple[str, ...] = (
    "010", "020", "030", "040", "050", "070", "071", "072", "073", "074", "075", "076", "077", "078",
    "079", "013", "015", "023", "024", "026", "033", "035", "036", "038", "043", "045", "046", "053",
    "055", "058",
)


def bsn_is_valid(bsn: str) -> bool:
    """True when ``bsn`` is nine digits passing the elfproef (and not all zeros).

    >>> bsn_is_valid("111222333"), bsn_is_valid("111222334")
    (True, False)
    """
    if len(bsn) != 9 or not bsn.isdigit() or bsn == "000000000":
        return False
    return sum(w * int(d) for w, d in zip(BSN_WEIGHTS, bsn)) % 11 == 0


def iban_check_digits(country: str, bban: str) -> str:
    """The two IBAN check digits (mod 97) for ``country`` and ``bban``.

    >>> iban_check_digits("NL", "ABNA0417164300")
    '91'
    """
    rearranged = bban + country + "00"
    numeric = "".join(str(int(c, 36)) for c in rearranged)
    return f"{98 - int(numeric) % 97:02d}"


def iban_is_valid(iban: str) -> bool:
    """True when the compact ``iban`` passes the mod-97 check.

    >>> iban_is_valid("NL91ABNA0417164300"), iban_is_valid("NL92ABNA0417164300")
    (True, False)
    """
    s = iban.replace(" ", "").upper()
    if len(s) < 5 or not s.isalnum():
        return False
    numeric = "".join(str(int(c, 36)) for c in s[4:] + s[:4])
    return int(numeric) % 97 == 1


class Scramble:
    """A bijection of ``range(size)``: ``k -> (a*k + b) % size`` with ``a`` coprime to ``size``.

    >>> s = Scramble(10, random.Random(1))
    >>> sorted(s(k) for k in range(10)) == list(range(10))
    True
    """

    __slots__ = ("size", "a", "b")

    def __init__(self, size: int, rng: random.Random) -> None:
        self.size = size
        a = rng.randrange(max(1, size // 3), max(2, size))
        while math.gcd(a, size) != 1:
            a += 1
        self.a = a
        self.b = rng.randrange(size)

    def __call__(self, k: int) -> int:
        return (self.a * k + self.b) % self.size


class Allocators:
    """Every identifier allocator of one generator run; draws are unique within the run.

    >>> al = Allocators(random.Random(7))
    >>> bsn_is_valid(al.bsn()), len(al.kvk()), iban_is_valid(al.iban())
    (True, 8, True)
    """

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._bsn = Scramble(10**8, rng)
        self._bsn_k = 0
        self._kvk = Scramble(9 * 10**7, rng)
        self._kvk_k = 0
        self._acct = Scramble(9 * 10**8, rng)
        self._acct_k = 0
        self._postbank = Scramble(9 * 10**6, rng)
        self._postbank_k = 0
        self._mobile = Scramble(5 * 10**7, rng)
        self._mobile_k = 0
        self._land = Scramble(len(AREA_CODES) * 8 * 10**6, rng)
        self._land_k = 0
        self._plates = {code: Scramble(_sidecode_space(code), rng) for code, _ in PLATE_SIDECODES}
        self._plate_k = {code: 0 for code, _ in PLATE_SIDECODES}
        self._bank_cum = _cumulative([w for _, w in BANKS])
        self._side_cum = _cumulative([w for _, w in PLATE_SIDECODES])
        self._modern_cum = _cumulative([w if i >= 3 else 0.0 for i, (_, w) in enumerate(PLATE_SIDECODES)])

    def bsn(self) -> str:
        """A fresh valid BSN (nine digits, elfproef)."""
        hi, lo = _bsn_tables()
        while True:
            value = self._bsn(self._bsn_k)
            self._bsn_k += 1
            check = (hi[value // 10000] + lo[value % 10000]) % 11
            if check <= 9 and value:
                return f"{value:08d}{check}"

    def kvk(self) -> str:
        """A fresh eight-digit KvK number (first digit not 0)."""
        value = 10**7 + self._kvk(self._kvk_k)
        self._kvk_k += 1
        return str(value)

    def iban(self, bank: str | None = None) -> str:
        """A fresh Dutch IBAN, compact (``NL91ABNA0417164300``); the account passes the elfproef."""
        if bank is None:
            bank = BANKS[_pick(self._bank_cum, self._rng.random())][0]
        if bank == "INGB" and self._rng.random() < 0.3:
            account = f"000{10**6 + self._postbank(self._postbank_k):07d}"  # old Postbank number
            self._postbank_k += 1
        else:
            while True:
                nine = f"{10**8 + self._acct(self._acct_k):09d}"
                self._acct_k += 1
                total = sum((10 - i) * int(d) for i, d in enumerate(nine))
                check = (-total) % 11
                if check <= 9:
                    account = nine + str(check)
                    break
        return "NL" + iban_check_digits("NL", bank + account) + bank + account

    def mobile(self) -> str:
        """A fresh mobile number in E.164 (``+31612345678``: 06 + 8 digits)."""
        value = 10**7 + self._mobile(self._mobile_k)
        self._mobile_k += 1
        return f"+316{value}"

    def landline(self) -> str:
        """A fresh geographic number in E.164 (area code without 0 + 7 digits)."""
        value = self._land(self._land_k)
        self._land_k += 1
        area, sub = divmod(value, 8 * 10**6)
        return f"+31{AREA_CODES[area][1:]}{2 * 10**6 + sub}"

    def plate(self, modern: bool = False) -> str:
        """A fresh licence plate in its canonical dashed sidecode form (``12-BDF-3``)."""
        cum = self._modern_cum if modern else self._side_cum
        code = PLATE_SIDECODES[_pick(cum, self._rng.random())][0]
        value = self._plates[code](self._plate_k[code])
        self._plate_k[code] += 1
        out = []
        for ch in reversed(code):
            if ch == "L":
                value, d = divmod(value, len(PLATE_LETTERS))
                out.append(PLATE_LETTERS[d])
            elif ch == "9":
                value, d = divmod(value, 10)
                out.append(str(d))
            else:
                out.append(ch)
        return "".join(reversed(out))


_BSN_TABLES: tuple[list[int], list[int]] | None = None


def _bsn_tables() -> tuple[list[int], list[int]]:
    """Weighted digit sums of the first and second four BSN digits, for every 4-digit value."""
    global _BSN_TABLES
    if _BSN_TABLES is None:
        def table(weights: tuple[int, ...]) -> list[int]:
            return [sum(w * int(d) for w, d in zip(weights, f"{v:04d}")) for v in range(10000)]

        _BSN_TABLES = (table(BSN_WEIGHTS[:4]), table(BSN_WEIGHTS[4:8]))
    return _BSN_TABLES


def _sidecode_space(code: str) -> int:
    return len(PLATE_LETTERS) ** code.count("L") * 10 ** code.count("9")


def _cumulative(weights: list[float]) -> list[float]:
    total = sum(weights)
    out, acc = [], 0.0
    for w in weights:
        acc += w / total
        out.append(acc)
    out[-1] = 1.0
    return out


def _pick(cum: list[float], u: float) -> int:
    """Index of the first cumulative weight above ``u`` (linear: the lists here are short)."""
    for i, c in enumerate(cum):
        if u < c:
            return i
    return len(cum) - 1
