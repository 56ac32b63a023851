"""Pass codes: human-typable, with a check character. A contract between the issuer, who
makes them, and redemption, who checks them before any lookup.

Alphabet: digits and capitals without the ambiguous 0/O, 1/I/L — 31 characters, a prime, so
the ISO 7064 pure system MOD 31-2 over it detects every single-character substitution and every
adjacent transposition (proved by the property tests). Ten random characters give ~49 bits.
Printed as XXXX-XXXX-XXX; typed in any case, with or without dashes and spaces.
"""

from __future__ import annotations

from stdnum.iso7064 import mod_37_2

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
_ALPHABET_SET = frozenset(ALPHABET)
BODY_LENGTH = 10
CODE_LENGTH = BODY_LENGTH + 1


class InvalidCode(ValueError):
    pass


def make_code(body: str) -> str:
    """The full code (body + check character) for a random body drawn from ALPHABET."""
    if len(body) != BODY_LENGTH or any(c not in ALPHABET for c in body):
        raise InvalidCode(f"a code body is {BODY_LENGTH} characters of {ALPHABET}")
    return body + mod_37_2.calc_check_digit(body, alphabet=ALPHABET)


def normalize(typed: str) -> str:
    """The canonical code for what a person typed; raises InvalidCode when the check fails."""
    code = typed.upper().replace("-", "").replace(" ", "")
    if len(code) != CODE_LENGTH:
        raise InvalidCode(f"a pass code has {CODE_LENGTH} characters, got {len(code)}")
    if not _ALPHABET_SET.issuperset(code):
        raise InvalidCode("a pass code has no 0, 1, I, L or O, and only letters and digits")
    if not mod_37_2.is_valid(code, alphabet=ALPHABET):
        raise InvalidCode("the check character does not match: the code was mistyped")
    return code


def display(code: str) -> str:
    return f"{code[:4]}-{code[4:8]}-{code[8:]}"
