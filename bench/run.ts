/**
 * npm run bench: how fast and how cheap the gateway is, measured in one run on this machine.
 *
 *   1. cached-query throughput, against a bare Yoga `{ hello }` server (same load, same machine, same run);
 *   2. cache-miss latency: what the gateway adds on top of the upstream's own latency, and what a bare Yoga
 *      proxy and a plain node:http proxy making the same call add, in the same samples; and what a round trip
 *      to bare Yoga and to plain node:http costs back-to-back and after an idle pause as long as the upstream's;
 *   3. a 100-creator batch: wall time against the UPSTREAM_CONCURRENCY bound, and upstream calls made;
 *   4. memory: RSS growth per cached entry after filling 50,000 entries.
 *
 * The servers under test and the fake upstream run in child processes of their own, as they would on machines
 * of their own; the load generator (autocannon) runs here.
 * Knobs (environment): BENCH_UPSTREAM_LATENCY_MS (20), BENCH_CONNECTIONS (10), BENCH_DURATION_SECONDS (8),
 * BENCH_ROUNDS (2), BENCH_FILL_ENTRIES (50000), BENCH_MISS_WARMUP (5000), BENCH_PHASES (throughput,miss,batch,memory),
 * BENCH_OUT (bench/results/latest.json for a full run).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { Agent, request } from 'undici';
import { buildServers } from './build.js';
import { authorizationHeader, batchQuery, benchApiKey, creatorQuery, upstreamPath } from './workload.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const knob = (name: string, fallback: number) => {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a non-negative number`);
  return value;
};
const config = {
  upstreamLatencyMs: knob('BENCH_UPSTREAM_LATENCY_MS', 20),
  connections: knob('BENCH_CONNECTIONS', 10),
  durationSeconds: knob('BENCH_DURATION_SECONDS', 8),
  warmupSeconds: 2,
  rounds: knob('BENCH_ROUNDS', 2),
  missSamples: 200,
  missWarmup: knob('BENCH_MISS_WARMUP', 5_000),
  batchSize: 100,
  batchRuns: 5,
  batchWarmup: 60,
  upstreamConcurrency: 8,
  fillEntries: knob('BENCH_FILL_ENTRIES', 50_000),
  settleSeconds: 30,
};
const allPhases = ['throughput', 'miss', 'batch', 'memory'];
const phases = new Set((process.env['BENCH_PHASES'] ?? allPhases.join(',')).split(',').map((phase) => phase.trim()));
for (const phase of phases) if (!allPhases.includes(phase)) throw new Error(`BENCH_PHASES: unknown phase ${phase}`);
// A partial run never overwrites the checked-in figures.
const outFile =
  process.env['BENCH_OUT'] ?? `${root}bench/results/${phases.size === allPhases.length ? 'latest.json' : 'partial.json.tmp'}`;

/** The fake upstream's child (bench/upstream-server.ts): its latency is set and its calls counted over IPC. */
interface Upstream {
  url: string;
  setLatency(ms: number): Promise<void>;
  calls(): Promise<number>;
  stop(): Promise<void>;
}

interface Server {
  url: string;
  child: ChildProcess;
  /** CPU time (user + system, all threads) the server has used so far, in microseconds. */
  cpuMicros(): Promise<number>;
  stop(): Promise<void>;
}

let compiled: (script: string) => string = () => {
  throw new Error('servers not built yet');
};

/** Starts a compiled server script as a child and waits for its port. */
async function startServer(script: string, env: Record<string, string>): Promise<Server> {
  const child = fork(compiled(script), [], {
    cwd: root,
    execArgv: ['--expose-gc'],
    env: { PATH: process.env['PATH'] ?? '', NODE_ENV: 'production', ...env },
    // Logs go nowhere: the gateway still formats every line, as it does in production.
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  // A send to a child that has died fails here, not as an unhandled 'error' that would skip the clean-up.
  child.on('error', (error) => process.stderr.write(`${script}: ${error.message}\n`));
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)));
    child.on('message', (message: { type: string; port?: number }) => {
      if (message.type === 'ready' && message.port) resolve(message.port);
    });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    child,
    cpuMicros: () =>
      new Promise<number>((resolve) => {
        child.once('message', (message: { micros: number }) => resolve(message.micros));
        child.send({ type: 'cpu' });
      }),
    stop: () =>
      new Promise<void>((resolve) => {
        child.removeAllListeners('exit');
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

async function startUpstream(): Promise<Upstream> {
  const server = await startServer('bench/upstream-server.ts', { BENCH_UPSTREAM_LATENCY_MS: String(config.upstreamLatencyMs) });
  // A question to the upstream's process; it fails the bench, rather than hanging it, if that process has died.
  const ask = <T>(message: { type: string; ms?: number }, read: (reply: any) => T) =>
    new Promise<T>((resolve, reject) => {
      const done = () => {
        server.child.off('message', listener);
        server.child.off('exit', exited);
      };
      const listener = (reply: { type: string }) => {
        if (reply.type !== message.type) return;
        done();
        resolve(read(reply));
      };
      const exited = (code: number | null) => {
        done();
        reject(new Error(`the fake upstream exited (${code}) during the bench`));
      };
      if (server.child.exitCode !== null || server.child.signalCode !== null) return exited(server.child.exitCode);
      server.child.on('message', listener);
      server.child.once('exit', exited);
      server.child.send(message);
    });
  return {
    url: server.url,
    setLatency: (ms) => ask({ type: 'latency', ms }, () => undefined),
    calls: () => ask({ type: 'calls' }, (reply: { calls: number }) => reply.calls),
    stop: server.stop,
  };
}

function gatewayEnv(upstreamUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    JUSTONEAPI_TOKEN: 'bench-token',
    JUSTONEAPI_BASE_URL: upstreamUrl,
    UPSTREAM_CONCURRENCY: String(config.upstreamConcurrency),
    UPSTREAM_RETRIES: '0',
    LOG_LEVEL: 'info',
    // API keys on, as production should run: every request pays the key check.
    GATEWAY_API_KEYS: benchApiKey,
    // One load generator stands in for many clients: the per-client limit would stop it after 300 misses.
    // Every other protection keeps its default, so the figures are those of a production deployment.
    RATE_LIMIT_PER_MINUTE: '0',
    ...extra,
  };
}

const agent = new Agent({ connections: 16 });

async function post(url: string, query: string, variables?: Record<string, unknown>) {
  const response = await request(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...authorizationHeader },
    body: JSON.stringify({ query, variables }),
    dispatcher: agent,
  });
  const body = (await response.body.json()) as { data?: any; errors?: unknown[] };
  if (response.statusCode !== 200 || body.errors) throw new Error(`unexpected answer: ${JSON.stringify(body).slice(0, 300)}`);
  return body;
}

async function load(url: string, query: string, durationSeconds: number) {
  const result = await autocannon({
    url: `${url}/graphql`,
    method: 'POST',
    headers: { 'content-type': 'application/json', ...authorizationHeader },
    body: JSON.stringify({ query }),
    connections: config.connections,
    duration: durationSeconds,
  });
  if (result.errors > 0 || result.non2xx > 0) throw new Error(`load run had ${result.errors} errors, ${result.non2xx} non-2xx`);
  return { requestsPerSecond: result.requests.total / durationSeconds, latencyP50Ms: result.latency.p50, latencyP99Ms: result.latency.p99 };
}

/** How long `run` took, in milliseconds. */
async function timed(run: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await run();
  return performance.now() - started;
}

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
};
const median = (values: number[]) => percentile(values, 50);
const round = (value: number, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits;

function machine() {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  return {
    nproc: availableParallelism(),
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? 'unknown',
    memoryGiB: round(totalmem() / 2 ** 30, 1),
    node: process.version,
  };
}

async function throughput(bare: Server, gateway: Server) {
  await post(gateway.url, creatorQuery); // fills the cache: every measured request is a hit
  await post(bare.url, '{ hello }');
  type Measured = { requestsPerSecond: number; cpuMicrosPerRequest: number };
  const rounds: Array<{ bare: Measured; gateway: Measured }> = [];
  for (let index = 0; index < config.rounds; index += 1) {
    const measured = {} as { bare: Measured; gateway: Measured };
    for (const [name, server, query] of [
      ['bare', bare, '{ hello }'],
      ['gateway', gateway, creatorQuery],
    ] as const) {
      await load(server.url, query, config.warmupSeconds);
      const cpuBefore = await server.cpuMicros();
      const result = await load(server.url, query, config.durationSeconds);
      const cpuMicros = (await server.cpuMicros()) - cpuBefore;
      measured[name] = {
        requestsPerSecond: Math.round(result.requestsPerSecond),
        cpuMicrosPerRequest: Math.round(cpuMicros / (result.requestsPerSecond * config.durationSeconds)),
      };
      log(`  round ${index + 1}: ${name} ${measured[name].requestsPerSecond} req/s, ${measured[name].cpuMicrosPerRequest} µs CPU per request`);
    }
    rounds.push(measured);
  }
  const mean = (pick: (r: (typeof rounds)[number]) => number) => rounds.reduce((sum, r) => sum + pick(r), 0) / rounds.length;
  const bareRps = mean((r) => r.bare.requestsPerSecond);
  const gatewayRps = mean((r) => r.gateway.requestsPerSecond);
  const bareCpu = mean((r) => r.bare.cpuMicrosPerRequest);
  const gatewayCpu = mean((r) => r.gateway.cpuMicrosPerRequest);
  return {
    bareYogaRps: Math.round(bareRps),
    gatewayCachedRps: Math.round(gatewayRps),
    ratio: round(gatewayRps / bareRps),
    bareYogaCpuMicrosPerRequest: Math.round(bareCpu),
    gatewayCpuMicrosPerRequest: Math.round(gatewayCpu),
    // The same comparison by CPU cost, which other load on the machine disturbs far less than req/s.
    cpuRatio: round(bareCpu / gatewayCpu),
    rounds,
  };
}

async function missLatency(gateway: Server, proxy: Server, nodeProxy: Server, upstream: Upstream) {
  // Variables, as generated clients send them: the document is parsed and validated once, every kolId is a miss.
  const missQuery = /* GraphQL */ `query Miss($kolId: ID!) { creator(kolId: $kolId) { linkStructure { summary { value } } } }`;
  let next = 4_000_000_000_000_000;
  const direct = async () => {
    const response = await request(`${upstream.url}${upstreamPath(String((next += 1)))}`, {
      dispatcher: agent,
    });
    await response.body.text();
  };
  const viaGateway = () => post(gateway.url, missQuery, { kolId: String((next += 1)) });
  const viaBareProxy = () => post(proxy.url, missQuery, { kolId: String((next += 1)) });
  const viaNodeProxy = () => post(nodeProxy.url, missQuery, { kolId: String((next += 1)) });
  const everyPath = () => Promise.all([direct(), viaGateway(), viaBareProxy(), viaNodeProxy()]);
  // Warm up every path without upstream latency, then with it. V8 optimises a function only after it has run
  // many times: after 300 misses the gateway was still compiling functions of the miss path, so the figure
  // was that of a server's first minute, not a running one's (--trace-opt: new optimisations until ~3,000).
  await upstream.setLatency(0);
  await Promise.all(
    Array.from({ length: 10 }, async () => {
      for (let index = 0; index < config.missWarmup / 10; index += 1) await everyPath();
    }),
  );
  await upstream.setLatency(config.upstreamLatencyMs);
  for (let index = 0; index < 10; index += 1) await everyPath();

  const before = await scrapeMiss(gateway);
  const alone: number[] = [];
  const through: number[] = [];
  const bare: number[] = [];
  const plain: number[] = [];
  for (let index = 0; index < config.missSamples; index += 1) {
    // Samples in fours: the upstream alone, the same call through the gateway (a cache miss), through a bare Yoga
    // proxy and through a plain node:http one, so all four meet the same moment of a shared machine.
    alone.push(await timed(direct));
    through.push(await timed(viaGateway));
    bare.push(await timed(viaBareProxy));
    plain.push(await timed(viaNodeProxy));
  }
  const after = await scrapeMiss(gateway);
  const result = {
    samples: through.length,
    upstreamP50Ms: round(median(alone)),
    upstreamP99Ms: round(percentile(alone, 99)),
    gatewayP50Ms: round(median(through)),
    gatewayP99Ms: round(percentile(through, 99)),
    bareYogaProxyP50Ms: round(median(bare)),
    bareYogaProxyP99Ms: round(percentile(bare, 99)),
    nodeProxyP50Ms: round(median(plain)),
  };
  return {
    ...result,
    // What the gateway adds as a client sees it: its latency minus the upstream's, measured the same way.
    addedP50Ms: round(result.gatewayP50Ms - result.upstreamP50Ms),
    addedP99Ms: round(result.gatewayP99Ms - result.upstreamP99Ms),
    // The yardstick: what Yoga alone adds in front of the same upstream call, and what the gateway adds beyond it.
    bareYogaProxyAddedP50Ms: round(result.bareYogaProxyP50Ms - result.upstreamP50Ms),
    beyondBareYogaProxyP50Ms: round(result.gatewayP50Ms - result.bareYogaProxyP50Ms),
    // Under both: a proxy with no GraphQL at all, the price of one more process and hop here.
    nodeProxyAddedP50Ms: round(result.nodeProxyP50Ms - result.upstreamP50Ms),
    // The same against the configured latency alone (also counts the fake upstream's own HTTP handling).
    overConfiguredP50Ms: round(result.gatewayP50Ms - config.upstreamLatencyMs),
    // The gateway's own time per miss, by its own metrics: operation time minus upstream attempt time (means).
    inGatewayMeanMs: round(
      ((after.operationSeconds - before.operationSeconds) / (after.operations - before.operations) -
        (after.upstreamSeconds - before.upstreamSeconds) / (after.attempts - before.attempts)) *
        1000,
      3,
    ),
  };
}

/**
 * What idling costs any server on this machine, apart from GraphQL and the upstream: round trips to bare Yoga
 * `{ hello }` and to a plain node:http server, timed back-to-back (a steady stream, one at a time), then each
 * after a pause as long as the upstream's latency, which is what the servers on a miss's path sit through.
 */
async function idlePenalty(bareYoga: Server, plainNode: Server) {
  const pause = () => new Promise((resolve) => setTimeout(resolve, config.upstreamLatencyMs));
  const roundTrip = (server: Server) => timed(() => post(server.url, '{ hello }'));
  for (let index = 0; index < config.missWarmup / 5; index += 1) await Promise.all([roundTrip(bareYoga), roundTrip(plainNode)]);
  const samples = { yogaIdle: [] as number[], yogaBusy: [] as number[], nodeIdle: [] as number[], nodeBusy: [] as number[] };
  for (let index = 0; index < config.missSamples; index += 1) {
    samples.yogaBusy.push(await roundTrip(bareYoga));
    samples.nodeBusy.push(await roundTrip(plainNode));
  }
  for (let index = 0; index < config.missSamples; index += 1) {
    await pause();
    samples.yogaIdle.push(await roundTrip(bareYoga));
    await pause();
    samples.nodeIdle.push(await roundTrip(plainNode));
  }
  return {
    pauseMs: config.upstreamLatencyMs,
    bareYogaBackToBackP50Ms: round(median(samples.yogaBusy)),
    bareYogaAfterPauseP50Ms: round(median(samples.yogaIdle)),
    plainNodeBackToBackP50Ms: round(median(samples.nodeBusy)),
    plainNodeAfterPauseP50Ms: round(median(samples.nodeIdle)),
  };
}

async function scrapeMiss(gateway: Server) {
  const response = await request(`${gateway.url}/metrics`, { dispatcher: agent });
  const text = await response.body.text();
  const value = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? 0);
  return {
    operationSeconds: value(/^xingtu_graphql_operation_duration_seconds_sum\{operation="Miss",outcome="success"\} (\S+)$/m),
    operations: value(/^xingtu_graphql_operation_duration_seconds_count\{operation="Miss",outcome="success"\} (\S+)$/m),
    upstreamSeconds: value(/^xingtu_upstream_request_duration_seconds_sum\{outcome="ok"\} (\S+)$/m),
    attempts: value(/^xingtu_upstream_request_duration_seconds_count\{outcome="ok"\} (\S+)$/m),
  };
}

async function batch(gateway: Server, upstream: Upstream) {
  // Warm up the batch path (V8 optimises what runs often) without upstream latency, on creators never measured, as the
  // miss phase does: the figure is a running server's, not that of the first few batches it ever served.
  await upstream.setLatency(0);
  for (let run = 0; run < config.batchWarmup; run += 1) {
    const kolIds = Array.from({ length: config.batchSize }, (_, index) => String(6_000_000_000_000_000 + run * 1_000 + index));
    await post(gateway.url, batchQuery, { kolIds });
  }
  await upstream.setLatency(config.upstreamLatencyMs);
  const runs: Array<{ wallMs: number; upstreamCalls: number }> = [];
  for (let run = 0; run < config.batchRuns; run += 1) {
    const kolIds = Array.from({ length: config.batchSize }, (_, index) => String(5_000_000_000_000_000 + run * 1_000 + index));
    const before = await upstream.calls();
    const started = performance.now();
    const body = await post(gateway.url, batchQuery, { kolIds });
    const wallMs = performance.now() - started;
    if (body.data.creators.length !== config.batchSize) throw new Error('batch answer has the wrong length');
    runs.push({ wallMs: round(wallMs, 1), upstreamCalls: (await upstream.calls()) - before });
  }
  const boundMs = Math.ceil(config.batchSize / config.upstreamConcurrency) * config.upstreamLatencyMs;
  const wallMs = median(runs.map((r) => r.wallMs));
  return {
    kolIds: config.batchSize,
    upstreamConcurrency: config.upstreamConcurrency,
    boundMs,
    wallMs,
    ratioToBound: round(wallMs / boundMs),
    // Each run on its own: one call per distinct kolId, no more (a duplicate or retry) and no fewer (a dropped id).
    upstreamCallsPerRun: runs.map((r) => r.upstreamCalls),
    everyRunMadeOneCallPerKolId: runs.every((r) => r.upstreamCalls === config.batchSize),
    runs,
  };
}

async function memory(upstream: Upstream) {
  await upstream.setLatency(0);
  const gateway = await startServer(
    'bench/gateway-server.ts',
    gatewayEnv(upstream.url, { CACHE_MAX_ENTRIES: String(config.fillEntries + 10_000), UPSTREAM_CONCURRENCY: '32' }),
  );
  try {
    const read = () =>
      new Promise<{ usage: NodeJS.MemoryUsage; cacheEntries: number }>((resolve) => {
        gateway.child.once('message', (message: { usage: NodeJS.MemoryUsage; cacheEntries: number }) => resolve(message));
        gateway.child.send({ type: 'memory' });
      });
    // Warm up every code path the fill uses, so what grows afterwards is the cache.
    let next = 7_000_000_000_000_000;
    const fill = async (count: number) => {
      const batches = Math.ceil(count / config.batchSize);
      let issued = 0;
      const worker = async () => {
        while (issued < batches) {
          issued += 1;
          const kolIds = Array.from({ length: config.batchSize }, () => String((next += 1)));
          await post(gateway.url, batchQuery, { kolIds });
        }
      };
      await Promise.all([worker(), worker()]);
    };
    await fill(2_000);
    for (let index = 0; index < 200; index += 1) await post(gateway.url, creatorQuery);
    // The baseline, like every reading, follows two compacting collections (bench/child-ipc.ts), so the
    // free heap the warm-up left is given back rather than filled by the entries; settle() then waits
    // for the rest of what the warm-up grew (the young generation, malloc's arenas) to go.
    const before = await settle(read);
    const started = performance.now();
    await fill(config.fillEntries);
    const fillSeconds = (performance.now() - started) / 1000;
    const afterFill = await read();
    const after = await settle(read);
    const entries = after.cacheEntries - before.cacheEntries;
    const perEntry = (bytes: number) => Math.round(bytes / entries);
    const mib = (bytes: number) => round(bytes / 2 ** 20, 1);
    // Heap V8 holds but does not use: compaction leaves little; much of it in the baseline would be
    // room the fill could grow into unseen.
    const heapFree = (usage: NodeJS.MemoryUsage) => usage.heapTotal - usage.heapUsed;
    const heapUsedBytesPerEntry = perEntry(after.usage.heapUsed - before.usage.heapUsed);
    const externalBytesPerEntry = perEntry(after.usage.external - before.usage.external);
    const rssBytesPerEntry = perEntry(after.usage.rss - before.usage.rss);
    return {
      entries,
      fillSeconds: round(fillSeconds, 1),
      rssBeforeMiB: mib(before.usage.rss),
      rssAfterMiB: mib(after.usage.rss),
      heapFreeBeforeMiB: mib(heapFree(before.usage)),
      heapFreeAfterMiB: mib(heapFree(after.usage)),
      /** The headline: RSS growth between the compacted, settled readings before and after the fill. */
      rssBytesPerEntry,
      // Right after the fill, before V8 gives back the young generation the burst of upstream answers grew.
      rssBytesPerEntryUnsettled: perEntry(afterFill.usage.rss - before.usage.rss),
      heapUsedBytesPerEntry,
      heapTotalBytesPerEntry: perEntry(after.usage.heapTotal - before.usage.heapTotal),
      externalBytesPerEntry,
      /** What the entries hold on the heap and off it (buffers): resident memory can be no less. */
      heapAndExternalBytesPerEntry: heapUsedBytesPerEntry + externalBytesPerEntry,
      /** False when the headline came out below that floor: something else shrank between the readings; run again. */
      soundReading: rssBytesPerEntry >= heapUsedBytesPerEntry + externalBytesPerEntry,
    };
  } finally {
    await gateway.stop();
  }
}

/**
 * Memory once V8 has settled: after a burst of allocation V8 keeps its grown heap until its memory
 * reducer, which runs when the process goes quiet, gives it back over the next seconds. Reading right
 * away would charge that slack (0.5 to 2 KB per entry, run to run) to the cache. Reads every 2.5 s
 * until RSS moves by less than 1 % between two reads (after at least 10 s), for at most `settleSeconds`.
 */
async function settle(read: () => Promise<{ usage: NodeJS.MemoryUsage; cacheEntries: number }>) {
  const started = Date.now();
  let last = await read();
  while (Date.now() - started < config.settleSeconds * 1000) {
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    const next = await read();
    const settled = Math.abs(next.usage.rss - last.usage.rss) < 0.01 * last.usage.rss;
    last = next;
    if (settled && Date.now() - started >= 10_000) break;
  }
  return last;
}

function log(line: string) {
  process.stdout.write(`${line}\n`);
}

async function main() {
  const startedAt = Date.now();
  const host = machine();
  log(`bench: ${host.nproc} CPUs (${host.cpuModel}), Node ${host.node}; upstream latency ${config.upstreamLatencyMs} ms`);
  compiled = buildServers();
  const upstream = await startUpstream();
  const servers: Server[] = [];
  const results: Record<string, unknown> = { takenAt: new Date().toISOString(), machine: host, config };
  const targets: Record<string, { target: string; value: number; met: boolean }> = {};
  const rows: Array<[string, string, string]> = [];
  try {
    const gateway = phases.has('throughput') || phases.has('miss') || phases.has('batch')
      ? servers[servers.push(await startServer('bench/gateway-server.ts', gatewayEnv(upstream.url))) - 1]!
      : undefined;
    if (gateway && phases.has('throughput')) {
      log('1. cached-query throughput');
      const bare = await startServer('bench/bare-yoga-server.ts', {});
      servers.push(bare);
      const cached = await throughput(bare, gateway);
      await bare.stop();
      results['cachedThroughput'] = cached;
      targets['cachedThroughputRatio'] = { target: '>= 0.7', value: cached.ratio, met: cached.ratio >= 0.7 };
      rows.push(
        ['cached throughput: gateway', `${cached.gatewayCachedRps} req/s`, ''],
        ['cached throughput: bare Yoga { hello }', `${cached.bareYogaRps} req/s`, ''],
        ['  ratio gateway / bare Yoga', `${cached.ratio}×`, mark(targets['cachedThroughputRatio'])],
        ['  CPU per request: gateway / bare Yoga', `${cached.gatewayCpuMicrosPerRequest} / ${cached.bareYogaCpuMicrosPerRequest} µs`, `(${cached.cpuRatio}× by CPU)`],
      );
    }
    if (gateway && phases.has('miss')) {
      log('2. cache-miss latency');
      const proxy = await startServer('bench/bare-yoga-proxy.ts', { BENCH_UPSTREAM_URL: upstream.url });
      servers.push(proxy);
      const nodeProxy = await startServer('bench/bare-node-proxy.ts', { BENCH_UPSTREAM_URL: upstream.url });
      servers.push(nodeProxy);
      const miss = await missLatency(gateway, proxy, nodeProxy, upstream);
      await proxy.stop();
      await nodeProxy.stop();
      const bareYoga = await startServer('bench/bare-yoga-server.ts', {});
      servers.push(bareYoga);
      const plainNode = await startServer('bench/bare-node-server.ts', {});
      servers.push(plainNode);
      const idle = await idlePenalty(bareYoga, plainNode);
      await bareYoga.stop();
      await plainNode.stop();
      results['missLatency'] = { ...miss, idlePenalty: idle };
      targets['missAddedP50Ms'] = { target: '<= 2', value: miss.addedP50Ms, met: miss.addedP50Ms <= 2 };
      rows.push(
        ['cache miss p50 / p99 (gateway)', `${miss.gatewayP50Ms} / ${miss.gatewayP99Ms} ms`, ''],
        ['upstream alone p50 / p99', `${miss.upstreamP50Ms} / ${miss.upstreamP99Ms} ms`, ''],
        ['  added by the gateway p50 / p99', `${miss.addedP50Ms} / ${miss.addedP99Ms} ms`, mark(targets['missAddedP50Ms'])],
        ["  gateway's own time per miss (mean)", `${miss.inGatewayMeanMs} ms`, ''],
        ['  a bare Yoga proxy adds p50 (same samples)', `${miss.bareYogaProxyAddedP50Ms} ms`, 'the floor for any Yoga server here'],
        ['  the gateway beyond the bare Yoga proxy p50', `${miss.beyondBareYogaProxyP50Ms} ms`, ''],
        ['  a plain node:http proxy adds p50 (same samples)', `${miss.nodeProxyAddedP50Ms} ms`, 'the floor for any proxy here'],
        [
          `  round trip p50, back-to-back / after ${idle.pauseMs} ms idle: bare Yoga`,
          `${idle.bareYogaBackToBackP50Ms} / ${idle.bareYogaAfterPauseP50Ms} ms`,
          'what idling costs any server here',
        ],
        ['    the same to a plain node:http server', `${idle.plainNodeBackToBackP50Ms} / ${idle.plainNodeAfterPauseP50Ms} ms`, ''],
      );
    }
    if (gateway && phases.has('batch')) {
      log('3. 100-creator batch');
      await upstream.setLatency(config.upstreamLatencyMs);
      const batched = await batch(gateway, upstream);
      results['batch'] = batched;
      targets['batchRatioToBound'] = {
        target: '<= 1.2',
        value: batched.ratioToBound,
        met: batched.ratioToBound <= 1.2 && batched.everyRunMadeOneCallPerKolId,
      };
      targets['batchUpstreamCalls'] = {
        target: `${config.batchSize} in every run`,
        value: batched.upstreamCallsPerRun.find((calls) => calls !== config.batchSize) ?? config.batchSize,
        met: batched.everyRunMadeOneCallPerKolId,
      };
      rows.push(
        [`creators(${config.batchSize} ids), concurrency ${batched.upstreamConcurrency}`, `${batched.wallMs} ms (bound ${batched.boundMs} ms, ${batched.ratioToBound}×)`, mark(targets['batchRatioToBound'])],
        ['  upstream calls made, each run', batched.upstreamCallsPerRun.join(', '), mark(targets['batchUpstreamCalls'])],
      );
    }
    await gateway?.stop();
    if (phases.has('memory')) {
      log(`4. memory (filling ${config.fillEntries} entries)`);
      const mem = await memory(upstream);
      results['memory'] = mem;
      targets['rssBytesPerEntry'] = { target: '<= 2048', value: mem.rssBytesPerEntry, met: mem.rssBytesPerEntry <= 2048 };
      rows.push(
        [`RSS per cached entry (${mem.entries} entries)`, `${mem.rssBytesPerEntry} B`, mark(targets['rssBytesPerEntry'])],
        [
          '  heap used + external per cached entry',
          `${mem.heapAndExternalBytesPerEntry} B`,
          mem.soundReading ? '' : 'RSS figure below it: memory elsewhere shrank between the readings; run again',
        ],
        ['  free heap in the readings before / after', `${mem.heapFreeBeforeMiB} / ${mem.heapFreeAfterMiB} MiB`, ''],
        ['  right after the fill (before V8 settles)', `${mem.rssBytesPerEntryUnsettled} B`, ''],
      );
    }
  } finally {
    for (const server of servers) server.child.kill();
    await upstream.stop();
    await agent.close();
  }
  results['targets'] = targets;
  results['totalSeconds'] = round((Date.now() - startedAt) / 1000, 1);

  const width = Math.max(...rows.map((row) => row[0].length));
  const valueWidth = Math.max(...rows.map((row) => row[1].length));
  log('');
  for (const [name, value, verdict] of rows) log(`${name.padEnd(width)}  ${value.padStart(valueWidth)}  ${verdict}`);
  log(`\n${results['totalSeconds']} s in all; written to ${outFile.replace(root, '')}`);
  writeFileSync(outFile, `${JSON.stringify(results, null, 2)}\n`);
}

function mark(target: { target: string; value: number; met: boolean }) {
  return `${target.met ? 'meets' : 'MISSES'} target ${target.target}`;
}

await main();
