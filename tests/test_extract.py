"""Step 1: exactly one bearer token, table-driven with stable codes."""

import pytest

from gateway.errors import GatewayError
from gateway.extract import bearer_token, websocket_protocol_token

H = b"authorization"


@pytest.mark.parametrize("headers,query,expected", [
    ([], b"", None),
    ([(H, b"Bearer abc.def.ghi")], b"", "abc.def.ghi"),
    ([(H, b"bearer abc.def.ghi")], b"", "abc.def.ghi"),
    ([(H, b"BEARER   abc.def.ghi ")], b"", "abc.def.ghi"),
    ([(H, b"Basic dXNlcjpwYXNz")], b"", None),
    ([(H, b"Token abc")], b"", None),
    ([(b"x-other", b"Bearer abc")], b"", None),
    ([(H, b"Bearer a-b_c~d+e/f==")], b"", "a-b_c~d+e/f=="),
    ([(H, b"Bearer abc")], b"access=1", "abc"),
])
def test_accepts(headers, query, expected):
    assert bearer_token(headers, query) == expected


@pytest.mark.parametrize("headers,query,code,status", [
    ([(H, b"Bearer a"), (H, b"Bearer a")], b"", "multiple_authorization", 400),
    ([(H, b"Bearer a"), (b"Authorization", b"Basic x")], b"", "multiple_authorization", 400),
    ([(H, b"Bearer")], b"", "empty_bearer", 400),
    ([(H, b"Bearer   ")], b"", "empty_bearer", 400),
    ([(H, b"Bearer a b")], b"", "multiple_credentials", 400),
    ([(H, b"Bearer a,b")], b"", "multiple_credentials", 400),
    ([(H, b"Bearer a$b")], b"", "bad_token_chars", 400),
    ([(H, b"Bearer a=b")], b"", "bad_token_chars", 400),
    ([(H, "Bearer a\u00e9".encode())], b"", "bad_token_chars", 400),
    ([(H, b"Bearer " + b"a" * 70000)], b"", "token_too_large", 400),
    ([], b"access_token=abc", "token_in_query", 400),
    ([], b"x=1&access_token=", "token_in_query", 400),
])
def test_refuses(headers, query, code, status):
    with pytest.raises(GatewayError) as e:
        bearer_token(headers, query)
    assert e.value.code == code and e.value.status == status
    assert e.value.www_authenticate().startswith('Bearer realm="poolgate", error="invalid_request"')


def test_websocket_protocol_entry():
    hs = [(b"sec-websocket-protocol", b"chat, bearer.abc.def.ghi")]
    assert websocket_protocol_token(hs, "bearer.") == "abc.def.ghi"
    assert websocket_protocol_token([(b"sec-websocket-protocol", b"chat")], "bearer.") is None
    with pytest.raises(GatewayError):
        websocket_protocol_token([(b"sec-websocket-protocol", b"bearer.a$b")], "bearer.")
