"""The end-to-end fixtures (recording upstream, ``poolgate serve`` factory) for these tests."""

from e2e.conftest import gateway_factory, upstream  # noqa: F401 (pytest fixtures)
