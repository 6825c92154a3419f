// Node BullMQ side of the benchmark harness (our own code). Usage: node node_bench.js '<json>'
// {url, prefix, queue, op: "add"|"addBulk"|"process", n, concurrency} -> prints {"seconds": s}
const path = require('path');
const modules = path.join(__dirname, '..', 'tests', 'interop', 'node_modules');
const { Queue, Worker } = require(path.join(modules, 'bullmq'));
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
  } else {
    throw new Error(`unknown op ${req.op}`);
  }
  await queue.close();
  await connection.quit();
  process.stdout.write(JSON.stringify({ seconds }) + '\n');
  process.exit(0);
}

main().catch((err) => { process.stderr.write(String(err && err.stack || err) + '\n'); process.exit(1); });
