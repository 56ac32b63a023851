"""Pass codes catch every single-character error and every adjacent transposition."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.pass_codes import ALPHABET, BODY_LENGTH, InvalidCode, display, make_code, normalize

bodies = st.text(alphabet=ALPHABET, min_size=BODY_LENGTH, max_size=BODY_LENGTH)


@given(bodies)
def test_a_made_code_is_valid(body: str) -> None:
    code = make_code(body)
    assert normalize(code) == code
    assert normalize(display(code).lower()) == code
    assert normalize(" ".join(code)) == code


@given(bodies)
def test_every_single_substitution_is_caught(body: str) -> None:
    code = make_code(body)
    for i in range(len(code)):
        for c in ALPHABET:
            if c != code[i]:
                with pytest.raises(InvalidCode):
                    normalize(code[:i] + c + code[i + 1 :])


@given(bodies)
def test_every_adjacent_transposition_is_caught(body: str) -> None:
    code = make_code(body)
    for i in range(len(code) - 1):
        if code[i] != code[i + 1]:
            with pytest.raises(InvalidCode):
                normalize(code[:i] + code[i + 1] + code[i] + code[i + 2 :])


def test_the_alphabet_has_no_ambiguous_characters() -> None:
    assert not set("01ILO") & set(ALPHABET)
    assert len(ALPHABET) == 31  # prime: what makes the MOD 31-2 guarantees hold


@pytest.mark.parametrize("typed", ["", "ABC", "O" * 11, "2345-6789-ABCD-E", "23456789AB!"])
def test_malformed_input_is_refused(typed: str) -> None:
    with pytest.raises(InvalidCode):
        normalize(typed)
