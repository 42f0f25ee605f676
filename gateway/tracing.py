"""OpenTelemetry spans around the request's I/O steps (verify, revocation, upstream); optional.

Off unless ``POOLGATE_TRACING=1`` (or ``true``/``yes``/``on``) and ``opentelemetry-api`` is
importable (``pip install 'poolgate[otel]'``). Off, ``span(name)`` returns one shared no-op
context manager: no allocation, and opentelemetry is never imported.

On, spans go to the globally configured tracer provider: the one ``opentelemetry-instrument``
or the host application set up, or else (with ``opentelemetry-sdk`` installed) one built here
from the standard ``OTEL_*`` environment, exporting over OTLP/HTTP when
``opentelemetry-exporter-otlp-proto-http`` is installed (``OTEL_TRACES_EXPORTER=console``
prints them instead). A span whose block raises a ``GatewayError`` carries the stable reason
code as ``poolgate.code`` and an error status.

Call sites (``with tracing.span("poolgate.verify"):``) read ``tracing.span`` at call time, so
``setup()`` in each worker process (after ``fork``) switches them on.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

log = logging.getLogger("poolgate.tracing")

__all__ = ["enabled", "inject", "request_span", "setup", "shutdown", "span"]

ENV = "POOLGATE_TRACING"
REQUEST = "poolgate.request"
VERIFY = "poolgate.verify"
REVOCATION = "poolgate.revocation"
UPSTREAM = "poolgate.upstream"

_NOOP: AbstractContextManager[None] = contextlib.nullcontext()
_tracer: Any = None         # an opentelemetry Tracer while tracing is on
_provider: Any = None       # the SDK provider built here (flushed by shutdown), if any
_error: Any = None          # lambda description: Status(StatusCode.ERROR, description)


def span(name: str, attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[Any]:
    """A span named ``name`` around the ``with`` block, or a shared no-op when tracing is off."""
    if _tracer is None:
        return _NOOP
    return _span(_tracer, name, attributes)


def request_span(headers: list[tuple[bytes, bytes]], method: str,
                 route: str | None = None) -> AbstractContextManager[Any]:
    """The request's server span, continuing the caller's trace (W3C ``traceparent``) if the
    request carries one; the no-op when off. Only the method and the route id are recorded:
    never the path's values, a header or a token."""
    if _tracer is None:
        return _NOOP
    from opentelemetry import propagate, trace  # noqa: PLC0415
    carrier: dict[str, str] = {}
    for k, v in headers:
        name = k.decode("latin-1").lower()
        if name in ("traceparent", "tracestate") and name not in carrier:
            carrier[name] = v.decode("latin-1")
    attributes = {"http.request.method": method}
    if route is not None:
        attributes["http.route"] = route
    return _tracer.start_as_current_span(  # type: ignore[no-any-return]
        REQUEST, context=propagate.extract(carrier), kind=trace.SpanKind.SERVER,
        attributes=attributes)


def inject(headers: list[tuple[bytes, bytes]]) -> None:
    """Append the current span's ``traceparent`` (and ``tracestate``) to headers going
    upstream, replacing the client's; does nothing when off."""
    if _tracer is None:
        return
    from opentelemetry import propagate  # noqa: PLC0415
    out: dict[str, str] = {}
    propagate.inject(out)
    if not out:
        return
    names = {k.lower().encode("latin-1") for k in out}
    headers[:] = [(k, v) for k, v in headers if k.lower() not in names]
    headers.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in out.items())


def enabled() -> bool:
    return _tracer is not None


@contextlib.contextmanager
def _span(tracer: Any, name: str, attributes: Mapping[str, Any] | None) -> Iterator[Any]:
    with tracer.start_as_current_span(name, attributes=attributes, record_exception=False,
                                      set_status_on_exception=False) as s:
        try:
            yield s
        except BaseException as e:
            code = getattr(e, "code", None)
            if isinstance(code, str):
                s.set_attribute("poolgate.code", code)
            s.set_status(_error(type(e).__name__))
            raise


def _env_on() -> bool:
    return os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes", "on")


def setup(enable: bool | None = None, *, tracer_provider: Any = None) -> bool:
    """Switch tracing on or off (default: from ``POOLGATE_TRACING``); True when on.

    Call it in the process that serves (after ``fork``: an SDK exporter runs a thread).
    """
    global _tracer, _error
    if enable is None:
        enable = _env_on()
    if not enable:
        _tracer = None
        return False
    try:
        from opentelemetry import trace  # noqa: PLC0415
        from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415
    except ImportError:
        log.warning("%s is set but opentelemetry-api is not installed (pip install "
                    "'poolgate[otel]'): tracing stays off", ENV)
        _tracer = None
        return False
    if tracer_provider is None:
        tracer_provider = _default_provider(trace)
    from . import __version__ as version  # noqa: PLC0415
    _error = lambda description: Status(StatusCode.ERROR, description)  # noqa: E731
    _tracer = trace.get_tracer("poolgate", version, tracer_provider=tracer_provider)
    return True


def _default_provider(trace: Any) -> Any:
    """None (= the global provider) unless nothing set one up and the SDK is here to build it."""
    global _provider
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return None                   # opentelemetry-instrument or the host app configured it
    try:
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
    except ImportError:
        log.warning("tracing is on but no tracer provider is configured and opentelemetry-sdk "
                    "is not installed: spans are dropped (pip install 'poolgate[otel]')")
        return None
    resource = Resource.create(
        {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "poolgate"})
    provider = TracerProvider(resource=resource)
    exporter = _exporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    _provider = provider
    return provider


def _exporter() -> Any:
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if kind == "none":
        return None
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter  # noqa: PLC0415
        return ConsoleSpanExporter()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found]  # noqa: PLC0415
            OTLPSpanExporter,
        )
    except ImportError:
        log.warning("tracing is on but opentelemetry-exporter-otlp-proto-http is not "
                    "installed: spans are dropped (pip install 'poolgate[otel]')")
        return None
    return OTLPSpanExporter()         # endpoint, headers, timeout from OTEL_EXPORTER_OTLP_*


def shutdown() -> None:
    """Flush and stop the provider built here (if any); tracing is off afterwards."""
    global _tracer, _provider
    _tracer = None
    provider, _provider = _provider, None
    if provider is not None:
        try:
            provider.shutdown()
        except Exception:   # an exporter failing at exit must not fail the exit
            log.warning("tracing: flushing spans at exit failed", exc_info=True)
