"""sbqueue.engine.telemetry and sbqueue._core.trace_context without Redis: span names/kinds/attributes, the ``tm``
text (bullmq-otel's format), the inject/extract round trip and BullMQ's ``tm``/``omc`` rules (as observed from
Node BullMQ 6.7.6 with bullmq-otel 2.0.1, see tests/interop/telemetry.js)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind as OtelSpanKind

from sbqueue._core import trace_context as tc
from sbqueue._core.flow import build_flow
from sbqueue.engine.telemetry import NO_TELEMETRY, OtelTelemetry, SpanKind, Telemetry, trace_flow_nodes
from sbqueue.errors import InvalidOptionError

TRACEPARENT = re.compile(r'^\{"traceparent":"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})"\}$')
#: a tm exactly as Node BullMQ + bullmq-otel stored it (opts of a job added by Queue.add)
NODE_TM = '{"traceparent":"00-f8e80f0504573efcb376389fe26b7caa-f8bd07f682a0aa4a-01"}'


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def otel(exporter: InMemorySpanExporter) -> Iterator[OtelTelemetry]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield OtelTelemetry(tracer_provider=provider)
    provider.shutdown()


def test_off_by_default_is_a_no_op() -> None:
    assert NO_TELEMETRY.enabled is False and type(NO_TELEMETRY) is Telemetry
    with NO_TELEMETRY.span(SpanKind.PRODUCER, "q", "add", "q.j") as span:
        span.set_attributes({"bullmq.job.id": "1"})
        span.add_event("job completed")
        assert span.metadata() == ""


def test_producer_span_name_kind_attributes_and_tm_format(otel: OtelTelemetry, exporter: InMemorySpanExporter) -> None:
    with otel.span(SpanKind.PRODUCER, "mail", "add", "mail.send") as span:
        span.set_attributes({"bullmq.job.name": "send", "bullmq.job.id": "7", "bullmq.worker.name": None})
        tm = span.metadata()
    (finished,) = exporter.get_finished_spans()
    assert finished.name == "add mail.send" and finished.kind is OtelSpanKind.PRODUCER
    assert dict(finished.attributes or {}) == {
        "bullmq.queue.name": "mail", "bullmq.queue.operation": "add", "bullmq.job.name": "send", "bullmq.job.id": "7",
    }  # fmt: skip
    match = TRACEPARENT.match(tm)
    assert match, tm  # JSON.stringify of the carrier: no spaces, only traceparent
    assert match.groups()[:2] == (f"{finished.context.trace_id:032x}", f"{finished.context.span_id:016x}")


def test_consumer_continues_the_trace_in_tm(otel: OtelTelemetry, exporter: InMemorySpanExporter) -> None:
    with otel.span(SpanKind.PRODUCER, "q", "add", "q.j") as span:
        tm = span.metadata()
    # the processor's own spans nest under process
    with otel.span(SpanKind.CONSUMER, "q", "process", "q", metadata=tm), otel.span(SpanKind.INTERNAL, "q", "inner", ""):
        pass
    add, inner, process = sorted(exporter.get_finished_spans(), key=lambda s: s.name)
    assert process.name == "process q" and process.kind is OtelSpanKind.CONSUMER
    assert process.context.trace_id == add.context.trace_id
    assert process.parent is not None and process.parent.span_id == add.context.span_id
    assert process.parent.is_remote  # it came through the job, not through memory
    assert inner.name == "inner" and inner.parent is not None and inner.parent.span_id == process.context.span_id


def test_consumer_reads_a_tm_written_by_node(otel: OtelTelemetry, exporter: InMemorySpanExporter) -> None:
    with otel.span(SpanKind.CONSUMER, "q1", "process", "q1", metadata=NODE_TM):
        pass
    (process,) = exporter.get_finished_spans()
    assert f"{process.context.trace_id:032x}" == "f8e80f0504573efcb376389fe26b7caa"
    assert process.parent is not None and f"{process.parent.span_id:016x}" == "f8bd07f682a0aa4a"


@pytest.mark.parametrize("tm", ["not json", "[1]", '{"x":"1"}', ""])
def test_an_unreadable_tm_starts_a_new_trace(otel: OtelTelemetry, exporter: InMemorySpanExporter, tm: str) -> None:
    with otel.span(SpanKind.CONSUMER, "q", "process", "q", metadata=tm):
        pass
    (process,) = exporter.get_finished_spans()
    assert process.parent is None


def test_producer_inside_a_caller_span_is_its_child(otel: OtelTelemetry, exporter: InMemorySpanExporter) -> None:
    with (
        otel.tracer.start_as_current_span("request") as request,
        otel.span(SpanKind.PRODUCER, "q", "addBulk", "q") as span,
    ):
        tm = span.metadata()
    add = next(s for s in exporter.get_finished_spans() if s.name == "addBulk q")
    assert add.parent is not None and add.parent.span_id == request.get_span_context().span_id
    assert TRACEPARENT.match(tm) and f"{request.get_span_context().trace_id:032x}" in tm


def test_an_exception_is_recorded_and_raised(otel: OtelTelemetry, exporter: InMemorySpanExporter) -> None:
    with pytest.raises(RuntimeError, match="boom"), otel.span(SpanKind.PRODUCER, "q", "add", "q.j"):
        raise RuntimeError("boom")
    (span,) = exporter.get_finished_spans()
    assert [e.name for e in span.events] == ["exception"]
    assert span.end_time is not None


def test_span_name_without_destination(otel: OtelTelemetry, exporter: InMemorySpanExporter) -> None:
    with otel.span(SpanKind.PRODUCER, "", "addBulkFlows", ""):
        pass
    assert exporter.get_finished_spans()[0].name == "addBulkFlows"


# --- the tm/omc rules ----------------------------------------------------------------------------------
def test_validate_telemetry() -> None:
    assert tc.validate_telemetry(None) == {}
    assert tc.validate_telemetry({"omit_context": True}) == {"omc": True}
    assert tc.validate_telemetry({"omitContext": False, "metadata": "{}"}) == {"omc": False, "tm": "{}"}
    for bad in ({"metadata": 1}, {"omit_context": "yes"}, {"other": 1}, "x"):
        with pytest.raises(InvalidOptionError):
            tc.validate_telemetry(bad)


def test_add_rule_the_span_context_replaces_metadata_unless_omc() -> None:
    # Node: add j1 -> {"tm": <span>}; omitContext -> {"omc": true}; metadata given -> replaced by the span's
    assert tc.for_add({"attempts": 1}, NODE_TM) == {"attempts": 1, "tm": NODE_TM}
    assert tc.for_add({"omc": True}, NODE_TM) is None
    assert tc.for_add({"tm": '{"x":"1"}'}, NODE_TM) == {"tm": NODE_TM}
    assert tc.for_add({"omc": False}, NODE_TM) == {"tm": NODE_TM}


def test_bulk_rule_metadata_wins_and_omc_stores_tm_false() -> None:
    # Node addBulk: {"tm":false,"omc":true}; {"tm":"{\"x\":\"1\"}"}; {"tm":<span>,"omc":false}
    assert tc.for_bulk_or_flow({}, NODE_TM) == {"tm": NODE_TM}
    assert tc.for_bulk_or_flow({"omc": True}, NODE_TM) == {"omc": True, "tm": False}
    assert tc.for_bulk_or_flow({"tm": '{"x":"1"}'}, NODE_TM) == {"tm": '{"x":"1"}'}
    assert tc.for_bulk_or_flow({"omc": False}, NODE_TM) == {"omc": False, "tm": NODE_TM}


def test_carrier_round_trip() -> None:
    carrier = {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01", "tracestate": "k=v"}
    text = tc.dumps_carrier(carrier)
    assert " " not in text and json.loads(text) == carrier
    assert tc.carrier_of({"tm": text}) == carrier
    assert tc.carrier_of({"tm": False}) is None and tc.carrier_of({}) is None


def test_flow_nodes_nest_like_the_tree_and_carry_their_span(
    otel: OtelTelemetry, exporter: InMemorySpanExporter
) -> None:
    tree = {"name": "a", "queue_name": "qa", "children": [
        {"name": "b", "queue_name": "qb", "children": [{"name": "c", "queue_name": "qa"}]},
        {"name": "d", "queue_name": "qb", "opts": {"telemetry": {"omit_context": True}}},
    ]}  # fmt: skip
    nodes, roots = build_flow([tree], prefix="bull", now=0)
    traced = trace_flow_nodes(otel, nodes, roots)
    spans = {s.attributes["bullmq.job.name"]: s for s in exporter.get_finished_spans()}  # type: ignore[index]
    assert {n: s.name for n, s in spans.items()} == {"a": "addNode qa", "b": "addNode qb", "c": "addNode qa",
                                                     "d": "addNode qb"}  # fmt: skip
    assert spans["a"].parent is None
    for child, parent in (("b", "a"), ("c", "b"), ("d", "a")):
        assert spans[child].parent.span_id == spans[parent].context.span_id  # type: ignore[union-attr]
    for node in traced:
        name = node.job.name
        stored = json.loads(node.job.opts)
        assert stored == node.job.opts_dict
        if name == "d":
            assert (stored["tm"], stored["omc"]) == (False, True)
        else:
            match = TRACEPARENT.match(stored["tm"])
            assert match and match.group(2) == f"{spans[name].context.span_id:016x}"


def test_flow_deeper_than_the_recursion_limit(otel: OtelTelemetry, exporter: InMemorySpanExporter) -> None:
    tree: dict[str, object] = {"name": "leaf", "queue_name": "q"}
    for level in range(1500):
        tree = {"name": f"n{level}", "queue_name": "q", "children": [tree]}
    nodes, roots = build_flow([tree], prefix="bull", now=0)
    assert len(trace_flow_nodes(otel, nodes, roots)) == 1501
    assert len(exporter.get_finished_spans()) == 1501
