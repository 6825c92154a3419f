#!/usr/bin/env node
// sbqueue interop driver: drives the real Node BullMQ (pinned in package.json) for the Python tests.
//
// Usage:  node driver.js '<json request>'      (or: node driver.js -   and the request on stdin)
//
// Request: {"url": "redis://127.0.0.1:PORT/0", "prefix": "bull", "queue": "q", "action": "...", ...params}
// Output:  exactly one JSON line with the result on stdout (exit 0), or {"error": "...", "stack": "..."}
//          (exit 1). Long-running actions ("work", "events") may print one {"ready": true, ...} line first.
//          Everything else (BullMQ warnings, diagnostics) goes to stderr.
//
// The action contract (parameter names and result shapes) is documented in README.md next to this file.
'use strict';

const { Queue, Worker, QueueEvents, UnrecoverableError, FlowProducer, WaitingChildrenError } = require('bullmq');
const IORedis = require('ioredis');

// Nothing but our own JSON lines may reach stdout.
console.log = (...args) => console.error(...args);
console.info = (...args) => console.error(...args);

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

function log(...args) {
  console.error('[driver]', ...args);
}

function writeLine(obj) {
  return new Promise(resolve => process.stdout.write(`${JSON.stringify(obj)}\n`, resolve));
}

async function readRequest() {
  const arg = process.argv[2];
  if (arg && arg !== '-') return JSON.parse(arg);
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

function connectionFor(req) {
  if (!req.url) throw new Error('request needs "url"');
  return { url: req.url, maxRetriesPerRequest: null };
}

function baseOpts(req) {
  return { connection: connectionFor(req), prefix: req.prefix || 'bull' };
}

function nn(value) {
  return value === undefined ? null : value;
}

async function jobInfo(queue, job) {
  return {
    id: job.id,
    name: job.name,
    data: nn(job.data),
    opts: nn(job.opts),
    progress: nn(job.progress),
    returnvalue: nn(job.returnvalue),
    failedReason: nn(job.failedReason),
    stacktrace: nn(job.stacktrace),
    attemptsMade: nn(job.attemptsMade),
    attemptsStarted: nn(job.attemptsStarted),
    stalledCounter: nn(job.stalledCounter),
    processedOn: nn(job.processedOn),
    finishedOn: nn(job.finishedOn),
    timestamp: nn(job.timestamp),
    delay: nn(job.delay),
    priority: nn(job.priority),
    processedBy: nn(job.processedBy),
    deduplicationId: nn(job.deduplicationId),
    repeatJobKey: nn(job.repeatJobKey),
    parentKey: nn(job.parentKey),
    deferredFailure: nn(job.deferredFailure),
    state: await job.getState(),
    logs: (await queue.getJobLogs(job.id, 0, -1, true)).logs,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Queue actions

const STATES = ['active', 'completed', 'delayed', 'failed', 'prioritized', 'wait', 'waiting-children', 'paused'];

async function withQueue(req, fn) {
  const queue = new Queue(req.queue, { ...baseOpts(req), ...(req.queueOpts || {}) });
  queue.on('error', err => log('queue error:', err && err.message));
  try {
    return await fn(queue);
  } finally {
    await queue.close();
  }
}

async function getJobOrThrow(queue, jobId) {
  const job = await queue.getJob(String(jobId));
  if (!job) throw new Error(`job ${jobId} not found`);
  return job;
}

const queueActions = {
  async add(queue, req) {
    const ids = [];
    for (const spec of req.jobs || []) {
      const job = await queue.add(spec.name, spec.data === undefined ? {} : spec.data, spec.opts || {});
      ids.push(job.id);
    }
    return { ids };
  },

  async addBulk(queue, req) {
    const jobs = await queue.addBulk((req.jobs || []).map(spec => ({
      name: spec.name, data: spec.data === undefined ? {} : spec.data, opts: spec.opts || {},
    })));
    return { ids: jobs.map(job => job.id) };
  },

  async upsertScheduler(queue, req) {
    const template = req.template || {};
    const job = await queue.upsertJobScheduler(req.schedulerId, req.repeat || {}, {
      name: template.name, data: template.data, opts: template.opts,
    });
    if (!job) return { id: null };
    return { id: job.id, name: job.name, delay: nn(job.delay), timestamp: nn(job.timestamp), opts: job.opts };
  },

  async removeScheduler(queue, req) {
    return { removed: await queue.removeJobScheduler(req.schedulerId) };
  },

  async getSchedulers(queue) {
    return { schedulers: await queue.getJobSchedulers(0, -1, true) };
  },

  async pause(queue) {
    await queue.pause();
    return { ok: true, isPaused: await queue.isPaused() };
  },

  async resume(queue) {
    await queue.resume();
    return { ok: true, isPaused: await queue.isPaused() };
  },

  async isPaused(queue) {
    return { isPaused: await queue.isPaused() };
  },

  async clean(queue, req) {
    const ids = await queue.clean(req.grace || 0, req.limit || 0, req.type || 'completed');
    return { ids };
  },

  async retryJobs(queue, req) {
    const opts = { state: req.state || 'failed' };
    if (req.count !== undefined) opts.count = req.count;
    if (req.timestamp !== undefined) opts.timestamp = req.timestamp;
    await queue.retryJobs(opts);
    return { ok: true };
  },

  async retryJob(queue, req) {
    const job = await getJobOrThrow(queue, req.jobId);
    const before = await job.getState();
    const state = req.state || (before === 'completed' ? 'completed' : 'failed');
    await job.retry(state, req.retryOpts || {});
    return { ok: true, before, state: await queue.getJobState(job.id) };
  },

  async promote(queue, req) {
    const job = await getJobOrThrow(queue, req.jobId);
    await job.promote();
    return { ok: true, state: await queue.getJobState(job.id) };
  },

  async promoteJobs(queue, req) {
    await queue.promoteJobs(req.count !== undefined ? { count: req.count } : {});
    return { ok: true };
  },

  async removeJob(queue, req) {
    return { removed: await queue.remove(String(req.jobId)) };
  },

  async drain(queue, req) {
    await queue.drain(Boolean(req.delayed));
    return { ok: true };
  },

  async obliterate(queue, req) {
    await queue.obliterate({ force: Boolean(req.force) });
    return { ok: true };
  },

  async setGlobalConcurrency(queue, req) {
    await queue.setGlobalConcurrency(req.concurrency);
    return { ok: true };
  },

  // the BullMQ 6 getters of issue 19: counts per priority, rate-limit TTL, deduplication owners
  async getters(queue, req) {
    const dedupJobIds = {};
    for (const id of req.dedupIds || []) dedupJobIds[id] = nn(await queue.getDeduplicationJobId(id));
    return {
      countsPerPriority: await queue.getCountsPerPriority(req.priorities || [0]),
      rateLimitTtl: await queue.getRateLimitTtl(),
      rateLimitTtlFor: req.maxJobs === undefined ? null : await queue.getRateLimitTtl(req.maxJobs),
      dedupJobIds,
    };
  },

  async removeDeduplicationKey(queue, req) {
    return { removed: await queue.removeDeduplicationKey(req.dedupId) };
  },

  async trimEvents(queue, req) {
    return { trimmed: await queue.trimEvents(req.maxLength) };
  },

  async setGlobalRateLimit(queue, req) {
    await queue.setGlobalRateLimit(req.max, req.duration);
    return { ok: true };
  },

  // flows: FlowProducer.add / addBulk of BullMQ-shaped trees ({name, queueName, data?, opts?, children?, prefix?})
  async addFlow(queue, req) {
    return withFlowProducer(req, async fp => ({ tree: flowTree(await fp.add(req.flow)) }));
  },

  async addFlows(queue, req) {
    return withFlowProducer(req, async fp => ({ trees: (await fp.addBulk(req.flows)).map(flowTree) }));
  },

  async getFlow(queue, req) {
    return withFlowProducer(req, async fp => {
      const node = await fp.getFlow({ id: String(req.jobId), queueName: req.queue, prefix: req.prefix || 'bull',
        depth: req.depth, maxChildren: req.maxChildren });
      return { tree: node ? flowTree(node) : null };
    });
  },

  // a job's flow view: {parentKey, parent, childrenValues, ignored, dependencies, counts}
  async flowInfo(queue, req) {
    const job = await getJobOrThrow(queue, req.jobId);
    return {
      parentKey: nn(job.parentKey),
      parent: nn(job.parent),
      childrenValues: nn(await job.getChildrenValues()),
      ignored: await job.getIgnoredChildrenFailures(),
      dependencies: await job.getDependencies(),
      counts: await job.getDependenciesCount(),
    };
  },

  async removeChildDependency(queue, req) {
    const job = await getJobOrThrow(queue, req.jobId);
    return { removed: await job.removeChildDependency() };
  },

  async inspect(queue, req) {
    const ranges = {};
    for (const state of STATES) ranges[state] = await queue.getRanges([state], 0, -1, true);
    let ids;
    if (Array.isArray(req.ids)) {
      ids = req.ids.map(String);
    } else {
      const states = Array.isArray(req.states) ? req.states.map(s => (s === 'waiting' ? 'wait' : s)) : STATES;
      ids = [...new Set(states.flatMap(state => ranges[state] || []))];
    }
    const jobs = [];
    for (const id of ids) {
      const job = await queue.getJob(id);
      if (job) jobs.push(await jobInfo(queue, job));
      else jobs.push({ id, missing: true, state: await queue.getJobState(id) });
    }
    return {
      counts: await queue.getJobCounts(),
      countsAll: await queue.getJobCounts(
        'active', 'completed', 'delayed', 'failed', 'prioritized', 'waiting', 'waiting-children', 'paused', 'wait'),
      isPaused: await queue.isPaused(),
      ranges,
      jobs,
      meta: await queue.getMeta(),
      metrics: { completed: await queue.getMetrics('completed'), failed: await queue.getMetrics('failed') },
      workers: await queue.getWorkers(),
    };
  },
};

function flowTree(node) {
  const out = { id: node.job.id, name: node.job.name, queueName: node.job.queueName };
  if (node.children) out.children = node.children.map(flowTree);
  return out;
}

async function withFlowProducer(req, fn) {
  const fp = new FlowProducer(baseOpts(req));
  try {
    return await fn(fp);
  } finally {
    await fp.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// work: a Worker that processes jobs under a script (fail / hang / sleep / progress) and reports what it did

function matchRule(rules, job) {
  if (!rules) return undefined;
  if (Object.prototype.hasOwnProperty.call(rules, job.id)) return rules[job.id];
  if (Object.prototype.hasOwnProperty.call(rules, job.name)) return rules[job.name];
  return undefined;
}

// -> {message, unrecoverable} or null when this attempt must succeed
function failureFor(req, job) {
  const unrecoverable = Array.isArray(req.unrecoverable)
    && (req.unrecoverable.includes(job.name) || req.unrecoverable.includes(job.id));
  let rule = matchRule(req.failWith, job);
  if (rule === undefined && req.failAll !== undefined) rule = req.failAll;
  if (rule !== undefined && rule !== null && typeof rule === 'object') {
    // {message, times}: fail only while fewer than `times` attempts were made
    if (rule.times !== undefined && job.attemptsMade >= rule.times) rule = undefined;
    else rule = rule.message;
  }
  if (rule === undefined || rule === null) {
    return unrecoverable ? { message: `unrecoverable ${job.name}`, unrecoverable } : null;
  }
  return { message: String(rule), unrecoverable };
}

async function returnValueFor(req, job) {
  if (req.returnValue === 'echo') return job.data;
  if (req.returnValue === 'children') return job.getChildrenValues();
  return req.returnValue === undefined ? null : req.returnValue;
}

async function work(req) {
  const hang = Boolean(req.hang);
  const count = req.count || 0;
  const idleMs = req.idleMs !== undefined ? req.idleMs : (count ? 0 : 1000);
  const timeoutMs = req.timeoutMs || (hang ? 60000 : 30000);
  const readyAfter = req.readyAfter || 1;
  const processed = [];
  const order = [];
  const events = [];
  const startedAt = new Map(); // `${id}/${attempt}` -> ms
  const active = new Set();
  let running = 0;
  let finals = 0;
  let predictedFinals = 0;
  let lastActivity = Date.now();
  let stopReason = null;
  let readySent = false;
  let resolveStop;
  const stopped = new Promise(resolve => (resolveStop = resolve));
  let worker;
  let closing = null;

  const stop = reason => {
    if (stopReason) return;
    stopReason = reason;
    // Closing synchronously (not from a later tick) makes the finishing job skip its fetch-next.
    closing = worker.close(reason === 'timeout');
    resolveStop();
  };

  const sendReady = () => {
    if (readySent) return;
    readySent = true;
    writeLine({ ready: true, active: [...active], workerId: worker.id });
  };

  const processor = async (job, token) => {
    const t0 = Date.now();
    running += 1;
    lastActivity = t0;
    order.push(job.id);
    active.add(job.id);
    startedAt.set(`${job.id}/${job.attemptsStarted}`, t0);
    try {
      if (hang) {
        if (active.size >= readyAfter) sendReady();
        await new Promise(() => {}); // never settles: the test kills this process with SIGKILL
      }
      if (req.sleepMs) await sleep(req.sleepMs);
      if (req.progress) {
        await job.updateProgress(req.progress === true ? 50 : req.progress);
        await job.log('node log line');
      }
      if (req.step && !job.data.step) {
        // the step pattern: add a child to this job, then wait for it (runs again once it is done)
        const childQueue = new Queue(req.step.queue, baseOpts(req));
        await childQueue.add(req.step.name || 'step-child', req.step.data || {},
          { parent: { id: job.id, queue: job.queueQualifiedName } });
        await childQueue.close();
        await job.updateData({ ...job.data, step: 1 });
        if (await job.moveToWaitingChildren(token)) throw new WaitingChildrenError();
      }
      const failure = failureFor(req, job);
      if (failure) {
        const attempts = job.opts.attempts || 1;
        const final = failure.unrecoverable || job.attemptsMade + 1 >= attempts;
        if (final) {
          predictedFinals += 1;
          if (count && predictedFinals >= count) stop('count');
        }
        if (failure.unrecoverable) throw new UnrecoverableError(failure.message);
        throw new Error(failure.message);
      }
      predictedFinals += 1;
      if (count && predictedFinals >= count) stop('count');
      return await returnValueFor(req, job);
    } finally {
      running -= 1;
      active.delete(job.id);
      lastActivity = Date.now();
    }
  };

  worker = new Worker(req.queue, processor, {
    ...baseOpts(req),
    concurrency: req.concurrency || 1,
    ...(req.workerOpts || {}),
  });

  const record = (job, state, extra) => {
    if (!job) return;
    const attempt = job.attemptsStarted;
    processed.push({
      id: job.id,
      name: job.name,
      data: nn(job.data),
      state,
      attemptsMade: job.attemptsMade,
      attemptsStarted: job.attemptsStarted,
      startedAt: nn(startedAt.get(`${job.id}/${attempt}`)),
      finishedAt: Date.now(),
      ...(req.recordOpts ? { opts: nn(job.opts) } : {}),
      ...extra,
    });
  };
  const noteFinal = () => {
    finals += 1;
    if (count && finals >= count) stop('count');
  };
  worker.on('completed', (job, result) => {
    events.push({ event: 'completed', id: job.id });
    record(job, 'completed', { final: true, returnvalue: nn(result) });
    noteFinal();
  });
  worker.on('failed', (job, err) => {
    const final = Boolean(job && job.finishedOn);
    events.push({ event: 'failed', id: job ? job.id : null, reason: err && err.message, final });
    record(job, 'failed', { final, failedReason: err && err.message });
    if (final) noteFinal();
  });
  worker.on('stalled', (jobId, prev) => events.push({ event: 'stalled', id: jobId, prev: nn(prev) }));
  worker.on('error', err => {
    log('worker error:', err && err.stack);
    events.push({ event: 'error', message: String(err && err.message) });
  });

  await worker.waitUntilReady();
  lastActivity = Date.now();
  if (!hang) sendReady();

  const timer = setTimeout(() => {
    if (hang) {
      log(`hang: hard cap of ${timeoutMs} ms reached without being killed`);
      process.exit(3);
    }
    stop('timeout');
  }, timeoutMs);
  const idleTimer = setInterval(() => {
    if (!hang && idleMs > 0 && running === 0 && Date.now() - lastActivity >= idleMs) stop('idle');
  }, 20);

  await stopped;
  clearInterval(idleTimer);
  clearTimeout(timer);
  await closing;
  return {
    processed,
    order,
    events,
    stoppedBy: stopReason,
    worker: { id: worker.id, name: nn(worker.opts.name) },
  };
}

// ---------------------------------------------------------------------------------------------------------
// events: a QueueEvents reader

function untilSatisfied(until, seen, total) {
  if (until === undefined || until === null) return false;
  if (typeof until === 'number') return total >= until;
  if (typeof until === 'string') return (seen[until] || 0) >= 1;
  if (Array.isArray(until)) return until.every(name => (seen[name] || 0) >= 1);
  return Object.entries(until).every(([name, n]) => (seen[name] || 0) >= n);
}

// A plain client that fails fast (BullMQ's own connections retry forever on a wrong URL).
async function withPlainClient(req, fn) {
  const client = new IORedis(req.url, {
    lazyConnect: true, connectTimeout: 5000, maxRetriesPerRequest: 0, retryStrategy: () => null,
  });
  let lastError = null;
  client.on('error', err => (lastError = err));
  try {
    await client.connect();
    return await fn(client);
  } catch (err) {
    throw lastError || err;
  } finally {
    client.disconnect();
  }
}

async function lastStreamId(req) {
  return withPlainClient(req, async client => {
    const last = await client.xrevrange(`${req.prefix || 'bull'}:${req.queue}:events`, '+', '-', 'COUNT', 1);
    return last.length ? last[0][0] : '0';
  });
}

async function eventsAction(req) {
  const ms = req.ms !== undefined ? req.ms : 3000;
  let lastEventId = req.lastEventId === undefined ? '0' : String(req.lastEventId);
  if (lastEventId === '$') lastEventId = await lastStreamId(req);
  const collected = [];
  const seen = {};
  let resolveDone;
  const done = new Promise(resolve => (resolveDone = resolve));
  const qe = new QueueEvents(req.queue, {
    ...baseOpts(req), lastEventId, autorun: false, blockingTimeout: req.blockingTimeout || 1000,
  });
  qe.on('error', err => log('queue events error:', err && err.message));
  // QueueEvents emits each stream entry as `<event>(fields, streamId)` and again as `<event>:<jobId>`;
  // `drained` comes as `drained(streamId)`. Record the first form only.
  const emit = qe.emit.bind(qe);
  qe.emit = (event, ...args) => {
    let entry = null;
    if (event === 'drained') {
      entry = { event, eventId: args[0] };
    } else if (args.length === 2 && args[0] && typeof args[0] === 'object' && !(args[0] instanceof Error)
      && typeof args[1] === 'string') {
      const fields = args[0];
      const perJob = fields.jobId !== undefined && event.endsWith(`:${fields.jobId}`);
      if (!perJob) entry = { event, eventId: args[1], ...fields };
    }
    if (entry) {
      collected.push(entry);
      seen[event] = (seen[event] || 0) + 1;
      if (untilSatisfied(req.until, seen, collected.length)) resolveDone(true);
    }
    return emit(event, ...args);
  };
  await qe.waitUntilReady();
  qe.run().catch(err => {
    if (!qe.closing) log('queue events run failed:', err && err.message);
  });
  writeLine({ ready: true, lastEventId });
  // Optional quiet-period stop: no new event for `idleMs` (counted from ready) ends the read early.
  let quietTimer = null;
  if (req.idleMs) {
    let lastCount = -1;
    let lastChange = Date.now();
    quietTimer = setInterval(() => {
      if (collected.length !== lastCount) {
        lastCount = collected.length;
        lastChange = Date.now();
      } else if (Date.now() - lastChange >= req.idleMs) {
        resolveDone(false);
      }
    }, 20);
  }
  let capTimer;
  const cap = new Promise(resolve => (capTimer = setTimeout(() => resolve(false), ms)));
  await Promise.race([done, cap]);
  clearTimeout(capTimer);
  if (quietTimer) clearInterval(quietTimer);
  await qe.close();
  const hasUntil = req.until !== undefined && req.until !== null;
  return { events: collected, satisfied: hasUntil ? untilSatisfied(req.until, seen, collected.length) : null };
}

// ---------------------------------------------------------------------------------------------------------

async function main() {
  const req = await readRequest();
  if (!req.queue) throw new Error('request needs "queue"');
  connectionFor(req);
  try {
    await withPlainClient(req, client => client.ping());
  } catch (err) {
    throw new Error(`cannot reach Redis at ${req.url}: ${err && err.message}`);
  }
  const action = req.action;
  if (action === 'work') return work(req);
  if (action === 'events') return eventsAction(req);
  const fn = queueActions[action];
  if (!fn) throw new Error(`unknown action ${JSON.stringify(action)}`);
  return withQueue(req, queue => fn(queue, req));
}

main().then(
  async result => {
    await writeLine(result);
    process.exit(0);
  },
  async err => {
    log(err && err.stack ? err.stack : err);
    await writeLine({ error: String(err && err.message ? err.message : err), stack: nn(err && err.stack) });
    process.exit(1);
  },
);
