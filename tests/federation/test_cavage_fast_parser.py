"""The one-regex ``Signature`` parser answers exactly like the character-by-character one.

:func:`federation.signatures.cavage._parse_params` tries ``_parse_params_fast`` first and falls
back to ``_parse_params_exact`` when the fast one declines (``None``). The property: on any
text, the fast parser either declines or returns what the exact parser returns, and it never
accepts what the exact parser refuses.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from federation.errors import MalformedHeader
from federation.signatures import cavage
from tests.security.test_properties import cavage_headers

_ascii = st.text(st.characters(codec="ascii"), max_size=200)
_alphabet = st.text(st.sampled_from(list('kI=", \t\\ab:/#-.()')), max_size=60)


@settings(max_examples=400, deadline=None)
@given(st.one_of(cavage_headers(), _ascii, _alphabet))
@example('keyId="a\\"b",signature="x"')
@example('keyId="a\\')
@example(',,keyId=a ,, signature = "b" ,')
@example('keyId="a"x')
@example("keyId=a keyId=b")
@example('keyId="a",keyid="b"')
def test_fast_parser_agrees_with_the_exact_parser(value: str) -> None:
    fast = cavage._parse_params_fast(value)
    try:
        exact = cavage._parse_params_exact(value)
    except MalformedHeader:
        assert fast is None
        return
    assert fast is None or fast == exact


def test_a_mastodon_header_takes_the_fast_path() -> None:
    header = (
        'keyId="https://peer.example/users/alice#main-key",algorithm="rsa-sha256",'
        'headers="(request-target) host date digest",signature="AAAA"'
    )
    assert cavage._parse_params_fast(header) == {
        "keyid": "https://peer.example/users/alice#main-key",
        "algorithm": "rsa-sha256",
        "headers": "(request-target) host date digest",
        "signature": "AAAA",
    }


@pytest.mark.parametrize("value", ['keyId="a",keyId="b"', 'keyId="a', "keyId", "ké=1", "k=\x01"])
def test_bad_headers_still_get_the_exact_error(value: str) -> None:
    with pytest.raises(MalformedHeader):
        cavage.parse_signature_header(value)
