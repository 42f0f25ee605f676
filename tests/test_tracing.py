"""gateway/tracing.py: a shared no-op when off; with the ``otel`` extra, real spans (names,
attributes, parent/child across awaits, the reason code on a refused step)."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from gateway import tracing
from gateway.errors import InvalidToken


@pytest.fixture(autouse=True)
def _off_afterwards(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(tracing.ENV, raising=False)
    yield
    tracing.shutdown()


def test_off_by_default_span_is_one_shared_no_op() -> None:
    assert tracing.setup() is False and not tracing.enabled()
    a, b = tracing.span(tracing.VERIFY), tracing.span(tracing.UPSTREAM, {"upstream": "x"})
    assert a is b                                     # nothing allocated per call
    assert tracing.request_span([], "GET") is a
    with a as inner:
        assert inner is None
    headers = [(b"traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")]
    tracing.inject(headers)
    assert headers == [(b"traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")]


@pytest.mark.parametrize("value", ["0", "", "no", "off"])
def test_env_values_that_keep_it_off(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(tracing.ENV, value)
    assert tracing.setup() is False


def test_on_without_the_api_stays_off_with_a_warning(monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(tracing.ENV, "1")
    monkeypatch.setitem(sys.modules, "opentelemetry", None)      # import fails
    with caplog.at_level(logging.WARNING, logger="poolgate.tracing"):
        assert tracing.setup() is False
    assert "opentelemetry-api is not installed" in caplog.text
    assert tracing.span("x") is tracing.span("y")


# --------------------------------------------------------------------------- with the SDK

@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Any:
    pytest.importorskip("opentelemetry.trace", reason="the otel extra is not installed")
    sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="the otel extra is not installed")
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        InMemorySpanExporter,
    )
    exp = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    monkeypatch.setenv(tracing.ENV, "1")
    assert tracing.setup(tracer_provider=provider) is True and tracing.enabled()
    return exp


async def test_spans_for_the_three_steps_nest_under_the_request(exporter: Any) -> None:
    from opentelemetry.trace import StatusCode

    async def request() -> None:
        with tracing.span("request"):
            with tracing.span(tracing.VERIFY):
                await asyncio.sleep(0)
            with tracing.span(tracing.REVOCATION, {"poolgate.store": "memory"}):
                await asyncio.sleep(0)
            with tracing.span(tracing.UPSTREAM, {"poolgate.upstream": "orders"}):
                await asyncio.sleep(0)

    await asyncio.gather(request(), request())       # concurrent requests keep their parents
    spans = exporter.get_finished_spans()
    assert len(spans) == 8
    roots = {s.context.span_id: s for s in spans if s.name == "request"}
    assert len(roots) == 2
    for s in spans:
        if s.name != "request":
            assert s.parent is not None and s.parent.span_id in roots
            assert s.status.status_code == StatusCode.UNSET
    up = [s for s in spans if s.name == "poolgate.upstream"]
    assert {s.attributes["poolgate.upstream"] for s in up} == {"orders"}
    assert {s.name for s in spans} == {"request", "poolgate.verify", "poolgate.revocation",
                                       "poolgate.upstream"}


def test_a_refused_step_carries_its_reason_code(exporter: Any) -> None:
    from opentelemetry.trace import StatusCode
    with pytest.raises(InvalidToken), tracing.span(tracing.VERIFY):
        raise InvalidToken("expired", code="token_expired")
    (s,) = exporter.get_finished_spans()
    assert s.attributes["poolgate.code"] == "token_expired"
    assert s.status.status_code == StatusCode.ERROR and s.status.description == "InvalidToken"
    assert not s.events                               # no exception text (it may echo input)


def test_shutdown_turns_it_off(exporter: Any) -> None:
    tracing.shutdown()
    assert not tracing.enabled()
    with tracing.span(tracing.VERIFY):
        pass
    assert exporter.get_finished_spans() == ()


def test_default_provider_is_built_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    trace = pytest.importorskip("opentelemetry.trace", reason="the otel extra is not installed")
    pytest.importorskip("opentelemetry.sdk.trace", reason="the otel extra is not installed")
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        pytest.skip("a global tracer provider is already configured in this process")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv(tracing.ENV, "1")
    assert tracing.setup() is True
    provider = tracing._provider
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "poolgate"
    with tracing.span(tracing.VERIFY) as s:
        assert s.is_recording()
    tracing.shutdown()
    assert tracing._provider is None


def test_request_span_continues_the_callers_trace_and_inject_passes_it_on(exporter: Any) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    incoming = [(b"Traceparent", f"00-{trace_id}-{parent_id}-01".encode()),
                (b"authorization", b"Bearer secret.token.here")]
    upstream = [(b"traceparent", b"00-" + b"f" * 32 + b"-" + b"e" * 16 + b"-01"),
                (b"x-request-id", b"r1")]
    with tracing.request_span(incoming, "GET", "orders"), tracing.span(tracing.UPSTREAM):
        tracing.inject(upstream)
    up, req = exporter.get_finished_spans()
    assert req.name == tracing.REQUEST and format(req.context.trace_id, "032x") == trace_id
    assert req.parent is not None and format(req.parent.span_id, "016x") == parent_id
    assert dict(req.attributes) == {"http.request.method": "GET", "http.route": "orders"}
    assert up.parent.span_id == req.context.span_id
    sent = [v.decode() for k, v in upstream if k == b"traceparent"]
    assert len(sent) == 1 and sent[0].split("-")[1:3] == [trace_id, format(up.context.span_id,
                                                                           "016x")]
    assert (b"x-request-id", b"r1") in upstream
