"""Fixtures shared by the end-to-end and middleware tests: a signing key and a JWKS server
that serves it (the tests control its keys and failure modes through ``JwksControl``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from e2e.servers import JwksControl, Signer, ThreadServer


@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
def jwks(signer: Signer) -> Iterator[tuple[JwksControl, ThreadServer]]:
    control = JwksControl()
    control.keys = [signer.public_jwk()]
    srv = ThreadServer(control).start()
    try:
        yield control, srv
    finally:
        srv.stop()
