"""The structural count that bounds a body's JSON values before it is parsed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from inference.rest.wire import structural_bytes


@given(st.binary(max_size=4096))
def test_the_count_is_the_number_of_structural_bytes(raw: bytes) -> None:
    assert structural_bytes(raw) == sum(raw.count(bytes([c])) for c in b"{[:,")


def test_the_count_bounds_the_values_of_a_json_body() -> None:
    assert structural_bytes(b'{"diamonds": [{"carat": 0.7, "cut": "Ideal"}]}') == 7
    assert structural_bytes(b'"{[:,"') == 4  # inside strings too: an upper bound, never an undercount
    assert structural_bytes(b"") == 0
