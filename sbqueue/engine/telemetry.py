"""Tracing of adds, flows and processing: off by default (a no-op), OpenTelemetry when asked (extra ``otel``).

``Queue``, ``FlowProducer`` and ``Worker`` take ``telemetry=``; the default :data:`NO_TELEMETRY` has ``enabled``
False and the engine checks only that attribute on its hot path, so tracing costs nothing when off.
:class:`OtelTelemetry` (sbqueue's twin of the npm package bullmq-otel's ``BullMQOtel``) opens the spans BullMQ 6.7
opens — same names (``add <queue>.<job name>``, ``addBulk <queue>``, ``addFlow <queue>``, ``addNode <queue>``,
``addBulkFlows``, ``process <queue>``), kinds and ``bullmq.*`` attributes — and moves the trace context through the
job's ``opts.tm`` the way bullmq-otel does (:mod:`sbqueue._core.trace_context`), so a trace begun by a Node
producer continues in a Python worker and the other way round.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sbqueue._core.flow import FlowNode
from sbqueue._core.trace_context import carrier_of, dumps_carrier, for_bulk_or_flow, stamped
from sbqueue.errors import ConfigurationError, InvalidOptionError

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.trace import Span, TracerProvider


class SpanKind(enum.IntEnum):
    """BullMQ's ``SpanKind`` (the numbers are OpenTelemetry's)."""

    INTERNAL = 0
    SERVER = 1
    CLIENT = 2
    PRODUCER = 3
    CONSUMER = 4


class Attr:
    """The span attribute keys of BullMQ's ``TelemetryAttributes`` that sbqueue sets."""

    QUEUE_NAME = "bullmq.queue.name"
    QUEUE_OPERATION = "bullmq.queue.operation"
    BULK_COUNT = "bullmq.job.bulk.count"
    BULK_NAMES = "bullmq.job.bulk.names"
    JOB_NAME = "bullmq.job.name"
    JOB_ID = "bullmq.job.id"
    JOB_ATTEMPTS_MADE = "bullmq.job.attempts.made"
    JOB_ATTEMPT_FINISHED_TIMESTAMP = "bullmq.job.attempt_finished_timestamp"
    JOB_PROCESSED_TIMESTAMP = "bullmq.job.processed.timestamp"
    JOB_RESULT = "bullmq.job.result"
    JOB_FAILED_REASON = "bullmq.job.failed.reason"
    FLOW_NAME = "bullmq.flow.name"
    WORKER_ID = "bullmq.worker.id"
    WORKER_NAME = "bullmq.worker.name"


class TracedSpan:
    """What engine code does with an open span. This base class is the no-op one."""

    __slots__ = ()

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Set attributes; None values are left out (as OpenTelemetry JS drops ``undefined``)."""

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        """Record an event on the span."""

    def metadata(self) -> str:
        """The ``tm`` text of this span's context (what a job added under it stores); empty when off."""
        return ""


_NOOP_SPAN = TracedSpan()


class Telemetry:
    """No tracing (the default). Subclass and override :meth:`span` to plug in another tracer."""

    #: the one thing the engine checks before it does any tracing work
    enabled = False

    @contextlib.contextmanager
    def span(
        self,
        kind: SpanKind,
        queue_name: str,
        operation: str,
        destination: str,
        *,
        metadata: str | None = None,
    ) -> Iterator[TracedSpan]:
        """Open a span named ``"<operation> <destination>"`` (just ``operation`` when ``destination`` is empty),
        current while the block runs, ended when it leaves; an exception is recorded on the span and re-raised.
        ``metadata`` is a job's ``tm``: the span continues the trace it carries (BullMQ's worker does this)."""
        yield _NOOP_SPAN

    def __repr__(self) -> str:
        return f"<{type(self).__name__} enabled={self.enabled}>"


#: the default of ``Queue``/``FlowProducer``/``Worker(telemetry=...)``
NO_TELEMETRY = Telemetry()


def checked_telemetry(telemetry: Any) -> Telemetry:
    """``telemetry=`` of a queue, flow producer or worker: None (off) or a :class:`sbqueue.Telemetry`."""
    if telemetry is None:
        return NO_TELEMETRY
    if not isinstance(telemetry, Telemetry):
        raise InvalidOptionError(
            f"telemetry must be an sbqueue.Telemetry (e.g. sbqueue.OtelTelemetry()), got {telemetry!r}",
            option="telemetry",
        )
    return telemetry


class _OtelSpan(TracedSpan):
    __slots__ = ("_context", "_owner", "_span")

    def __init__(self, owner: OtelTelemetry, span: Span, context: Context) -> None:
        self._owner, self._span, self._context = owner, span, context

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self._span.set_attributes({k: _attribute(v) for k, v in attributes.items() if v is not None})

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        self._span.add_event(name, {k: _attribute(v) for k, v in (attributes or {}).items() if v is not None})

    def metadata(self) -> str:
        carrier: dict[str, str] = {}
        self._owner.propagator.inject(carrier, context=self._context)
        return dumps_carrier(carrier)

    @property
    def otel_span(self) -> Span:
        """The OpenTelemetry span itself."""
        return self._span


class OtelTelemetry(Telemetry):
    """Trace with OpenTelemetry, wire-compatible with bullmq-otel (``new BullMQOtel(...)`` in Node).

    ``tracer_name`` / ``version`` name the tracer (bullmq-otel's ``tracerName`` / ``version``);
    ``tracer_provider`` defaults to the global one and ``propagator`` to the global text-map propagator (W3C
    ``traceparent`` unless ``OTEL_PROPAGATORS`` says otherwise). Needs ``pip install 'sbqueue[otel]'``.
    """

    enabled = True

    def __init__(
        self,
        tracer_name: str = "sbqueue",
        version: str | None = None,
        *,
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
    ) -> None:
        try:
            # imported here, not at module top: `import sbqueue` stays light without tracing
            from opentelemetry import context as otel_context
            from opentelemetry import propagate, trace
        except ImportError as exc:
            raise ConfigurationError(
                f"OtelTelemetry needs OpenTelemetry ({exc}): pip install 'sbqueue[otel]'"
            ) from None
        self.tracer_name = tracer_name
        self.tracer = trace.get_tracer(tracer_name, version, tracer_provider=tracer_provider)
        self.propagator = propagator if propagator is not None else propagate.get_global_textmap()
        self._context = otel_context
        self._trace = trace
        self._kinds = {kind: trace.SpanKind[kind.name] for kind in SpanKind}

    @contextlib.contextmanager
    def span(
        self,
        kind: SpanKind,
        queue_name: str,
        operation: str,
        destination: str,
        *,
        metadata: str | None = None,
    ) -> Iterator[TracedSpan]:
        current = self._context.get_current()
        parent: Context | None = None
        if metadata:
            carrier = carrier_of({"tm": metadata})
            if carrier is not None:
                parent = self.propagator.extract(carrier, context=current)
        name = f"{operation} {destination}" if destination else operation
        span = self.tracer.start_span(name, context=parent, kind=self._kinds[kind])
        # as BullMQ's trace(): a consumer runs in the producer's context, everything else in the caller's
        base = parent if kind is SpanKind.CONSUMER and parent is not None else current
        message_context = self._trace.set_span_in_context(span, base)
        token = self._context.attach(message_context)
        try:
            span.set_attributes({Attr.QUEUE_NAME: queue_name, Attr.QUEUE_OPERATION: operation})
            yield _OtelSpan(self, span, message_context)
        except BaseException as exc:
            span.record_exception(exc)
            raise
        finally:
            self._context.detach(token)
            span.end()

    def __repr__(self) -> str:
        return f"<OtelTelemetry tracer={self.tracer_name!r}>"


def trace_flow_nodes(telemetry: Telemetry, nodes: list[FlowNode], roots: Sequence[int]) -> list[FlowNode]:
    """One ``addNode <queue>`` span per node, nested as the tree (Node's FlowProducer.addNode), each node's job
    stamped with its own span's context. Depth-first without recursion: a flow may be deeper than the stack."""
    out = list(nodes)
    opened: list[contextlib.AbstractContextManager[TracedSpan]] = []
    todo: list[tuple[int, bool]] = [(root, False) for root in reversed(roots)]
    try:
        while todo:
            index, leaving = todo.pop()
            if leaving:
                opened.pop().__exit__(None, None, None)
                continue
            node = out[index]
            scope = telemetry.span(SpanKind.PRODUCER, node.keys.name, "addNode", node.keys.name)
            span = scope.__enter__()
            opened.append(scope)
            span.set_attributes({Attr.JOB_NAME: node.job.name, Attr.JOB_ID: node.job_id})
            out[index] = dataclasses.replace(node, job=stamped(node.job, for_bulk_or_flow, span.metadata()))
            todo.append((index, True))
            todo.extend((child, False) for child in reversed(node.children))
    except BaseException:
        while opened:  # innermost first: each records the exception, as nested `with` blocks would
            opened.pop().__exit__(*sys.exc_info())
        raise
    return out


def record_outcome(span: TracedSpan | None, event: str, value: str, attempts_made: int) -> None:
    """BullMQ's events on a process span: ``job completed`` (the return value's JSON) or ``job failed`` (the
    reason), and the attempts made so far."""
    if span is None:
        return
    if event == "completed":
        span.add_event("job completed", {Attr.JOB_RESULT: value})
    else:
        span.add_event("job failed", {Attr.JOB_FAILED_REASON: value})
    span.set_attributes({Attr.JOB_ATTEMPTS_MADE: attempts_made})


def _attribute(value: Any) -> Any:
    """OpenTelemetry takes str/bool/int/float or sequences of one of them; anything else as text."""
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return list(value)
    return str(value)
