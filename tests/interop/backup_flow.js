#!/usr/bin/env node
// Adds one flow with Node BullMQ's FlowProducer (for tests/interop/test_backup_node.py).
// Usage: node backup_flow.js '{"url": "redis://...", "prefix": "bull", "flow": {name, queueName, data, children}}'
// Prints one JSON line {"job": {id, queueName}, "children": [{id, queueName}, ...]} (recursively flattened).
'use strict';

const { FlowProducer } = require('bullmq');

console.log = (...args) => console.error(...args);

function flatten(node, out) {
  out.push({ id: node.job.id, queueName: node.job.queueName, name: node.job.name });
  for (const child of node.children || []) flatten(child, out);
  return out;
}

async function main() {
  const req = JSON.parse(process.argv[2]);
  const producer = new FlowProducer({ connection: { url: req.url, maxRetriesPerRequest: null }, prefix: req.prefix });
  try {
    const tree = await producer.add(req.flow);
    process.stdout.write(JSON.stringify({ jobs: flatten(tree, []) }) + '\n');
  } finally {
    await producer.close();
  }
}

main().then(() => process.exit(0), err => {
  process.stdout.write(JSON.stringify({ error: String(err && err.message), stack: String(err && err.stack) }) + '\n');
  process.exit(1);
});
