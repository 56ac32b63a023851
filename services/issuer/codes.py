"""Fresh pass codes, drawn from the operating system's CSPRNG (see schemas.pass_codes for the format)."""

from __future__ import annotations

import secrets

from schemas import pass_codes as codes

# Bytes below the largest multiple of the alphabet's size map to a character; the others are
# dropped, so that every character stays equally likely (rejection sampling, no modulo bias).
_UNBIASED = 256 - 256 % len(codes.ALPHABET)
_TO_ALPHABET = bytes(ord(codes.ALPHABET[b % len(codes.ALPHABET)]) if b < _UNBIASED else 0 for b in range(256))
_REJECTED = bytes(range(_UNBIASED, 256))


def new_codes(count: int) -> list[str]:
    """`count` distinct random codes from the OS CSPRNG, drawn in bulk (bytes.translate): one
    `secrets.choice` per character was most of the time of activating a 45 000-pass order."""
    needed = count * codes.BODY_LENGTH
    chars = b""
    while len(chars) < needed:
        chars += secrets.token_bytes(needed).translate(_TO_ALPHABET, _REJECTED)
    text = chars.decode("ascii")
    made = list(
        dict.fromkeys(
            codes.make_code(text[i : i + codes.BODY_LENGTH]) for i in range(0, needed, codes.BODY_LENGTH)
        )
    )
    return made if len(made) == count else made + new_codes(count - len(made))
