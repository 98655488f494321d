"""OpenTelemetry traces of the data layer (extra `otel`): a span for every statement, inside a
span for the repository method that sent it. Off until `instrument()` is called.

- Statements: the official asyncpg instrumentation (`opentelemetry-instrumentation-asyncpg`).
  Every statement passes through asyncpg, whether SQLAlchemy sends it (as a prepared
  statement; BEGIN, COMMIT and ROLLBACK too) or the repositories' executor sends it straight
  to the driver, so each gets exactly one CLIENT span, named by its first keyword, with
  `db.statement` (the SQL text, never parameter values) and the server's address. (The
  SQLAlchemy instrumentation would add a second span to half of them and miss the rest.)
- Repository methods: the public methods of the four repositories are wrapped; a call opens
  an INTERNAL span named after it (e.g. `ReportRepository.get_full`, with
  `code.function.name`), the parent of its statements' spans, and every span started inside
  it carries `exportsathi_db.repository.method` (added by a span processor, so only with the
  SDK's TracerProvider). A method called by another method of a repository adds no span.

`uninstrument()` undoes it. When off, nothing is wrapped: not a single extra instruction.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any
from weakref import WeakSet

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

from exportsathi_db.repositories import (
    AnalysisRepository,
    ChatRepository,
    ReportRepository,
    UserRepository,
)

REPOSITORIES: tuple[type, ...] = (
    UserRepository,
    ReportRepository,
    ChatRepository,
    AnalysisRepository,
)
# The attribute naming the repository method on every span started inside its call.
REPOSITORY_METHOD = "exportsathi_db.repository.method"
CODE_FUNCTION_NAME = "code.function.name"  # OpenTelemetry semantic conventions

_current_method: ContextVar[str | None] = ContextVar(REPOSITORY_METHOD, default=None)
# (class, name) -> what the class itself defined under that name before (None: inherited)
_replaced: dict[tuple[type, str], Any] = {}
_asyncpg_instrumented_here = False  # not if someone else had already instrumented asyncpg
_providers_with_processor: WeakSet[SdkTracerProvider] = WeakSet()


class RepositoryMethodProcessor(SpanProcessor):
    """Adds `exportsathi_db.repository.method` to every span started inside a repository
    method's call (the asyncpg instrumentation's statement spans among them)."""

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        method = _current_method.get()
        if method is not None:
            span.set_attribute(REPOSITORY_METHOD, method)

    def on_end(self, span: ReadableSpan) -> None:
        pass


def instrument(*, tracer_provider: trace.TracerProvider | None = None) -> None:
    """Trace every statement and repository method call, to `tracer_provider` (default: the
    global one). Call once at start-up, after setting up the tracer provider; again: no-op."""
    global _asyncpg_instrumented_here
    if _replaced:
        return
    provider = tracer_provider or trace.get_tracer_provider()
    instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    if not instrumentor.is_instrumented_by_opentelemetry:  # e.g. by opentelemetry-instrument
        instrumentor.instrument(tracer_provider=provider)
        _asyncpg_instrumented_here = True
    if isinstance(provider, SdkTracerProvider) and provider not in _providers_with_processor:
        provider.add_span_processor(RepositoryMethodProcessor())
        _providers_with_processor.add(provider)
    tracer = trace.get_tracer("exportsathi_db", tracer_provider=provider)
    for cls in REPOSITORIES:
        for name, method in inspect.getmembers(cls, inspect.iscoroutinefunction):
            if not name.startswith("_"):
                _replaced[cls, name] = vars(cls).get(name)
                setattr(cls, name, _traced(tracer, cls, name, method))


def uninstrument() -> None:
    """Undo `instrument()`: the repositories' own methods back, asyncpg unwrapped (unless it
    was instrumented by someone else)."""
    global _asyncpg_instrumented_here
    for (cls, name), original in _replaced.items():
        if original is None:
            delattr(cls, name)
        else:
            setattr(cls, name, original)
    _replaced.clear()
    if _asyncpg_instrumented_here:
        AsyncPGInstrumentor().uninstrument()  # type: ignore[no-untyped-call]
        _asyncpg_instrumented_here = False


def _traced(
    tracer: trace.Tracer, cls: type, name: str, method: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    span_name = f"{cls.__name__}.{name}"
    attributes = {CODE_FUNCTION_NAME: f"{cls.__module__}.{cls.__qualname__}.{name}"}

    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        if _current_method.get() is not None:  # inside another repository method's span
            return await method(*args, **kwargs)
        token = _current_method.set(span_name)
        try:
            with tracer.start_as_current_span(
                span_name, kind=trace.SpanKind.INTERNAL, attributes=attributes
            ):
                return await method(*args, **kwargs)
        finally:
            _current_method.reset(token)

    return call
