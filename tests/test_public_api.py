"""The public API is small and deliberate: a change to it must change this test."""

import gateway


def test_public_api_is_curated():
    assert sorted(gateway.__all__) == sorted([
        "GatewayMiddleware", "load_config", "Config", "ConfigError", "GatewayError",
        "Principal", "VerifiedToken", "Decision", "__version__"])
    for name in gateway.__all__:
        assert hasattr(gateway, name)


def test_principal_is_a_starlette_user():
    from starlette.authentication import BaseUser
    assert issubclass(gateway.Principal, BaseUser)
