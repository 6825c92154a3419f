// Node BullMQ side of the benchmark harness (our own code). Usage: node node_bench.js '<json>'
// {url, prefix, queue, op: "add"|"addBulk"|"process", n, concurrency} -> prints {"seconds": s}
// flows (benchmarks/bench_flows.py): op "flowAdd" (n trees of 1 parent in `queue` + `children` children in
// `childQueue`, one FlowProducer.add each) and "flowProcess" (workers on `queue` and `childQueue`, timed until
// n parents completed).
// latency (benchmarks/bench_latency.py): one idle worker; n jobs added one at a time, 20-40 ms apart, each
// after the previous completed -> prints {"samples": [ms from before add() to the processor's first line]}.
const path = require('path');
const modules = path.join(__dirname, '..', 'tests', 'interop', 'node_modules');
const { Queue, Worker, FlowProducer } = require(path.join(modules, 'bullmq'));
const IORedis = require(path.join(modules, 'ioredis'));

async function main() {
  const req = JSON.parse(process.argv[2]);
  const connection = new IORedis(req.url, { maxRetriesPerRequest: null });
  const queue = new Queue(req.queue, { connection, prefix: req.prefix });
  await queue.waitUntilReady();
  let seconds;
  if (req.op === 'add') {
    const t = process.hrtime.bigint();
    for (let i = 0; i < req.n; i++) await queue.add('bench', { i });
    seconds = Number(process.hrtime.bigint() - t) / 1e9;
  } else if (req.op === 'addBulk') {
    const t = process.hrtime.bigint();
    for (let b = 0; b < req.n; b += 1000) {
      const jobs = [];
      for (let i = b; i < Math.min(b + 1000, req.n); i++) jobs.push({ name: 'bench', data: { i } });
      await queue.addBulk(jobs);
    }
    seconds = Number(process.hrtime.bigint() - t) / 1e9;
  } else if (req.op === 'process') {
    // the queue is pre-filled by the harness; time from worker start to the n-th completion
    let done = 0;
    let resolveDone;
    const finished = new Promise((resolve) => { resolveDone = resolve; });
    const t = process.hrtime.bigint();
    const worker = new Worker(req.queue, async () => null, {
      connection: new IORedis(req.url, { maxRetriesPerRequest: null }), prefix: req.prefix,
      concurrency: req.concurrency,
    });
    worker.on('completed', () => { done += 1; if (done >= req.n) resolveDone(); });
    await finished;
    seconds = Number(process.hrtime.bigint() - t) / 1e9;
    await worker.close();
  } else if (req.op === 'flowAdd') {
    const fp = new FlowProducer({ connection, prefix: req.prefix });
    const children = [];
    for (let i = 0; i < req.children; i++) children.push({ name: 'child', queueName: req.childQueue, data: { i } });
    const t = process.hrtime.bigint();
    for (let k = 0; k < req.n; k++) {
      await fp.add({ name: 'parent', queueName: req.queue, data: { k }, children });
    }
    seconds = Number(process.hrtime.bigint() - t) / 1e9;
    await fp.close();
  } else if (req.op === 'flowProcess') {
    // the flows are pre-added by the harness; time from workers' start to the n-th parent completion
    let done = 0;
    let resolveDone;
    const finished = new Promise((resolve) => { resolveDone = resolve; });
    const opts = () => ({ connection: new IORedis(req.url, { maxRetriesPerRequest: null }), prefix: req.prefix,
      concurrency: req.concurrency });
    const t = process.hrtime.bigint();
    const kids = new Worker(req.childQueue, async (job) => job.data.i, opts());
    const parents = new Worker(req.queue, async () => null, opts());
    parents.on('completed', () => { done += 1; if (done >= req.n) resolveDone(); });
    await finished;
    seconds = Number(process.hrtime.bigint() - t) / 1e9;
    await Promise.all([kids.close(), parents.close()]);
  } else if (req.op === 'latency') {
    const wall = () => performance.timeOrigin + performance.now();
    let resolveDone;
    let started;
    const worker = new Worker(req.queue, async () => wall(), {
      connection: new IORedis(req.url, { maxRetriesPerRequest: null }), prefix: req.prefix, concurrency: 1,
    });
    worker.on('completed', (_job, value) => { started = value; resolveDone(); });
    const completion = () => new Promise((resolve) => { resolveDone = resolve; });
    let next = completion();
    await queue.add('warm-up', {});
    await next;
    const samples = [];
    for (let i = 0; i < req.n; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 20));
      next = completion();
      const t0 = wall();
      await queue.add('lat', { i });
      await next;
      samples.push(started - t0);
    }
    await worker.close();
    await queue.close();
    await connection.quit();
    process.stdout.write(JSON.stringify({ samples }) + '\n');
    process.exit(0);
  } else {
    throw new Error(`unknown op ${req.op}`);
  }
  await queue.close();
  await connection.quit();
  process.stdout.write(JSON.stringify({ seconds }) + '\n');
  process.exit(0);
}

main().catch((err) => { process.stderr.write(String(err && err.stack || err) + '\n'); process.exit(1); });
