"""Test helper: an :class:`sbqueue.OtelTelemetry` on its own tracer provider with an in-memory exporter (no global
OpenTelemetry state is touched), and the finished spans in a shape easy to assert on."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sbqueue import OtelTelemetry

#: bullmq-otel's tm: JSON.stringify({traceparent}) — no spaces
TM = re.compile(r'^\{"traceparent":"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}"\}$')


@dataclasses.dataclass
class Span:
    """One finished span, ids as lowercase hex (as Node prints them)."""

    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str | None
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]


class Tracing:
    """``telemetry`` to hand to Queue/Worker/FlowProducer; ``spans()`` what they recorded."""

    def __init__(self, tracer_name: str = "sbqueue-test") -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.telemetry = OtelTelemetry(tracer_name, tracer_provider=self.provider)
        self.tracer = self.provider.get_tracer("sbqueue-test-processor")

    def spans(self, name: str | None = None) -> list[Span]:
        out = []
        for s in self.exporter.get_finished_spans():
            if name is not None and s.name != name:
                continue
            parent = None if s.parent is None else f"{s.parent.span_id:016x}"
            out.append(Span(
                name=s.name, kind=int(s.kind.value), trace_id=f"{s.context.trace_id:032x}",
                span_id=f"{s.context.span_id:016x}", parent_span_id=parent,
                attributes=dict(s.attributes or {}), events=[(e.name, dict(e.attributes or {})) for e in s.events],
            ))  # fmt: skip
        return out

    def close(self) -> None:
        self.provider.shutdown()


def tm_ids(opts_json: str) -> tuple[str, str]:
    """(trace id, span id) of the ``tm`` in a job hash's raw ``opts``."""
    tm = json.loads(opts_json)["tm"]
    match = TM.match(tm)
    assert match, tm
    return match.group(1), match.group(2)
