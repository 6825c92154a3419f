#!/usr/bin/env node
// Node BullMQ 6.7.6 with the npm package bullmq-otel and an in-memory span exporter (for
// tests/interop/test_telemetry_node.py): adds jobs or processes them with telemetry on, then prints the finished
// spans and the stored job opts as one JSON line.
//
// Usage: node telemetry.js '<json request>'
//   {"url", "prefix", "queue", "action": "add", "jobs": [{name, data, opts}]}       one Queue.add per job
//   {"url", "prefix", "queue", "action": "addBulk", "jobs": [...]}                  one Queue.addBulk
//   {"url", "prefix", "action": "flow", "flow": {name, queueName, data, opts, children}}   FlowProducer.add
//   {"url", "prefix", "queue", "action": "work", "count": n, "timeout": ms}        a Worker until n jobs finished
// Output: {"jobs": [{queue, id, opts}], "spans": [{name, kind, traceId, spanId, parentSpanId, attributes,
//          events: [{name, attributes}]}]}   (opts = the raw `opts` field of the job hash)
'use strict';

const { trace, context, propagation } = require('@opentelemetry/api');
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { W3CTraceContextPropagator } = require('@opentelemetry/core');
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
const { BullMQOtel } = require('bullmq-otel');
const { Queue, Worker, FlowProducer } = require('bullmq');
const IORedis = require('ioredis');

console.log = (...args) => console.error(...args);

const exporter = new InMemorySpanExporter();
trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
propagation.setGlobalPropagator(new W3CTraceContextPropagator());
const telemetry = new BullMQOtel({ tracerName: 'sbqueue-interop' });

function spans() {
  return exporter.getFinishedSpans().map(span => {
    const parent = span.parentSpanContext || (span.parentSpanId ? { spanId: span.parentSpanId } : undefined);
    return {
      name: span.name,
      kind: span.kind,
      traceId: span.spanContext().traceId,
      spanId: span.spanContext().spanId,
      parentSpanId: parent ? parent.spanId : null,
      attributes: span.attributes,
      events: span.events.map(event => ({ name: event.name, attributes: event.attributes || {} })),
    };
  });
}

function flatten(node, out) {
  out.push({ queue: node.job.queueName, id: node.job.id });
  for (const child of node.children || []) flatten(child, out);
  return out;
}

async function withOpts(redis, prefix, jobs) {
  for (const job of jobs) job.opts = await redis.hget(`${prefix}:${job.queue}:${job.id}`, 'opts');
  return jobs;
}

async function main() {
  const req = JSON.parse(process.argv[2]);
  const prefix = req.prefix || 'bull';
  const connection = { url: req.url, maxRetriesPerRequest: null };
  const redis = new IORedis(req.url, { maxRetriesPerRequest: null });
  let jobs = [];
  try {
    if (req.action === 'add' || req.action === 'addBulk') {
      const queue = new Queue(req.queue, { connection, prefix, telemetry });
      if (req.action === 'add') {
        for (const j of req.jobs) jobs.push(await queue.add(j.name, j.data || {}, j.opts));
      } else {
        jobs = await queue.addBulk(req.jobs);
      }
      jobs = jobs.map(job => ({ queue: req.queue, id: job.id }));
      await queue.close();
    } else if (req.action === 'flow') {
      const producer = new FlowProducer({ connection, prefix, telemetry });
      jobs = flatten(await producer.add(req.flow), []);
      await producer.close();
    } else if (req.action === 'work') {
      let finished = 0;
      const worker = new Worker(req.queue, async job => {
        if (job.data && job.data.fail) throw new Error('asked to fail');
        return { ok: true, id: job.id };
      }, { connection, prefix, telemetry, name: 'node-worker' });
      const done = new Promise(resolve => {
        const count = () => { finished += 1; if (finished >= req.count) resolve(); };
        worker.on('completed', job => { jobs.push({ queue: req.queue, id: job.id }); count(); });
        worker.on('failed', job => { jobs.push({ queue: req.queue, id: job.id }); count(); });
      });
      await Promise.race([done, new Promise(resolve => setTimeout(resolve, req.timeout || 15000))]);
      await worker.close();
    } else {
      throw new Error(`unknown action ${req.action}`);
    }
    await withOpts(redis, prefix, jobs);
    process.stdout.write(JSON.stringify({ jobs, spans: spans() }) + '\n');
  } finally {
    redis.disconnect();
  }
}

main().then(() => process.exit(0), err => {
  process.stdout.write(JSON.stringify({ error: String(err && err.message), stack: String(err && err.stack) }) + '\n');
  process.exit(1);
});
