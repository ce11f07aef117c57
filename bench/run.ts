/**
 * npm run bench: how fast and how cheap the gateway is, measured in one run on this machine.
 *
 *   1. cached-query throughput, against a bare Yoga `{ hello }` server (same load, same machine, same run);
 *   2. cache-miss latency: what the gateway adds on top of the upstream's own latency;
 *   3. a 100-creator batch: wall time against the UPSTREAM_CONCURRENCY bound, and upstream calls made;
 *   4. memory: RSS growth per cached entry after filling 50,000 entries.
 *
 * The servers under test run in child processes of their own; the load generator (autocannon) and the
 * fake upstream run here, so on a 2-core machine the server has a core and the load another.
 * Knobs (environment): BENCH_UPSTREAM_LATENCY_MS (20), BENCH_CONNECTIONS (10), BENCH_DURATION_SECONDS (8),
 * BENCH_ROUNDS (2), BENCH_FILL_ENTRIES (50000), BENCH_OUT (bench/results/latest.json).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { Agent, request } from 'undici';
import { startBenchUpstream } from './fake-upstream.js';

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
  batchSize: 100,
  batchRuns: 3,
  upstreamConcurrency: 8,
  fillEntries: knob('BENCH_FILL_ENTRIES', 50_000),
};
const outFile = process.env['BENCH_OUT'] ?? `${root}bench/results/latest.json`;

const creatorQuery = /* GraphQL */ `{ creator(kolId: "6870301416131936264") { kolId linkStructure { authorLinkType buckets { level stage value proportion sameIndustryMedian } summary { value rankPercent relativeRatio } fetchedAt } } }`;
const batchQuery = /* GraphQL */ `query Batch($kolIds: [ID!]!) { creators(kolIds: $kolIds) { kolId linkStructure { summary { value } } } }`;

interface Server {
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Starts a server script as a child (through tsx, like `npm run dev`) and waits for its port. */
async function startServer(script: string, env: Record<string, string>): Promise<Server> {
  const child = fork(`${root}${script}`, [], {
    cwd: root,
    execArgv: ['--import', 'tsx', '--expose-gc'],
    env: { PATH: process.env['PATH'] ?? '', NODE_ENV: 'production', ...env },
    // Logs go nowhere: the gateway still formats every line, as it does in production.
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)));
    child.on('message', (message: { type: string; port?: number }) => {
      if (message.type === 'ready' && message.port) resolve(message.port);
    });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    child,
    stop: () =>
      new Promise<void>((resolve) => {
        child.removeAllListeners('exit');
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

function gatewayEnv(upstreamUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    JUSTONEAPI_TOKEN: 'bench-token',
    JUSTONEAPI_BASE_URL: upstreamUrl,
    UPSTREAM_CONCURRENCY: String(config.upstreamConcurrency),
    UPSTREAM_RETRIES: '0',
    LOG_LEVEL: 'info',
    ...extra,
  };
}

const agent = new Agent({ connections: 16 });

async function post(url: string, query: string, variables?: Record<string, unknown>) {
  const response = await request(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
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
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query }),
    connections: config.connections,
    duration: durationSeconds,
  });
  if (result.errors > 0 || result.non2xx > 0) throw new Error(`load run had ${result.errors} errors, ${result.non2xx} non-2xx`);
  return { requestsPerSecond: result.requests.total / durationSeconds, latencyP50Ms: result.latency.p50, latencyP99Ms: result.latency.p99 };
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
  const rounds: Array<{ bare: number; gateway: number }> = [];
  for (let index = 0; index < config.rounds; index += 1) {
    const measured = { bare: 0, gateway: 0 };
    for (const [name, server, query] of [
      ['bare', bare, '{ hello }'],
      ['gateway', gateway, creatorQuery],
    ] as const) {
      await load(server.url, query, config.warmupSeconds);
      measured[name] = (await load(server.url, query, config.durationSeconds)).requestsPerSecond;
      log(`  round ${index + 1}: ${name} ${Math.round(measured[name])} req/s`);
    }
    rounds.push(measured);
  }
  const bareRps = rounds.reduce((sum, r) => sum + r.bare, 0) / rounds.length;
  const gatewayRps = rounds.reduce((sum, r) => sum + r.gateway, 0) / rounds.length;
  return { bareYogaRps: Math.round(bareRps), gatewayCachedRps: Math.round(gatewayRps), ratio: round(gatewayRps / bareRps), rounds };
}

async function missLatency(gateway: Server, upstreamUrl: string) {
  const direct: number[] = [];
  const viaGateway: number[] = [];
  const base = 4_000_000_000_000_000;
  const timed = async (run: () => Promise<unknown>) => {
    const started = performance.now();
    await run();
    return performance.now() - started;
  };
  for (let index = 0; index < config.missSamples + 10; index += 1) {
    const kolId = String(base + index);
    // Paired samples: the upstream alone, then the same kind of call through the gateway (a cache miss).
    const alone = await timed(async () => {
      const response = await request(`${upstreamUrl}/api/douyin-xingtu/get-kol-link-struct/v1?token=x&kolId=${kolId}&acceptCache=false`, {
        dispatcher: agent,
      });
      await response.body.text();
    });
    const through = await timed(() => post(gateway.url, `{ creator(kolId: "${kolId}") { linkStructure { summary { value } } } }`));
    if (index < 10) continue; // warm-up
    direct.push(alone);
    viaGateway.push(through);
  }
  const result = {
    samples: viaGateway.length,
    upstreamP50Ms: round(median(direct)),
    upstreamP99Ms: round(percentile(direct, 99)),
    gatewayP50Ms: round(median(viaGateway)),
    gatewayP99Ms: round(percentile(viaGateway, 99)),
  };
  return {
    ...result,
    // What the gateway adds: its latency minus the upstream's, measured the same way.
    addedP50Ms: round(result.gatewayP50Ms - result.upstreamP50Ms),
    addedP99Ms: round(result.gatewayP99Ms - result.upstreamP99Ms),
    // The same against the configured latency alone (also counts the fake upstream's own HTTP handling).
    overConfiguredP50Ms: round(result.gatewayP50Ms - config.upstreamLatencyMs),
    overConfiguredP99Ms: round(result.gatewayP99Ms - config.upstreamLatencyMs),
  };
}

async function batch(gateway: Server, upstream: { calls: number }) {
  const runs: Array<{ wallMs: number; upstreamCalls: number }> = [];
  for (let run = 0; run < config.batchRuns; run += 1) {
    const kolIds = Array.from({ length: config.batchSize }, (_, index) => String(5_000_000_000_000_000 + run * 1_000 + index));
    const before = upstream.calls;
    const started = performance.now();
    const body = await post(gateway.url, batchQuery, { kolIds });
    const wallMs = performance.now() - started;
    if (body.data.creators.length !== config.batchSize) throw new Error('batch answer has the wrong length');
    runs.push({ wallMs: round(wallMs, 1), upstreamCalls: upstream.calls - before });
  }
  const boundMs = Math.ceil(config.batchSize / config.upstreamConcurrency) * config.upstreamLatencyMs;
  const wallMs = median(runs.map((r) => r.wallMs));
  return {
    kolIds: config.batchSize,
    upstreamConcurrency: config.upstreamConcurrency,
    boundMs,
    wallMs,
    ratioToBound: round(wallMs / boundMs),
    upstreamCalls: Math.max(...runs.map((r) => r.upstreamCalls)),
    runs,
  };
}

async function memory(upstream: Awaited<ReturnType<typeof startBenchUpstream>>) {
  upstream.latencyMs = 0;
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
    const before = await read();
    const started = performance.now();
    await fill(config.fillEntries);
    const fillSeconds = (performance.now() - started) / 1000;
    const after = await read();
    const entries = after.cacheEntries - before.cacheEntries;
    return {
      entries,
      fillSeconds: round(fillSeconds, 1),
      rssBeforeMiB: round(before.usage.rss / 2 ** 20, 1),
      rssAfterMiB: round(after.usage.rss / 2 ** 20, 1),
      rssBytesPerEntry: Math.round((after.usage.rss - before.usage.rss) / entries),
      heapUsedBytesPerEntry: Math.round((after.usage.heapUsed - before.usage.heapUsed) / entries),
    };
  } finally {
    await gateway.stop();
  }
}

function log(line: string) {
  process.stdout.write(`${line}\n`);
}

async function main() {
  const startedAt = Date.now();
  const host = machine();
  log(`bench: ${host.nproc} CPUs (${host.cpuModel}), Node ${host.node}; upstream latency ${config.upstreamLatencyMs} ms`);
  const upstream = await startBenchUpstream(config.upstreamLatencyMs);
  const bare = await startServer('bench/bare-yoga-server.ts', {});
  const gateway = await startServer('bench/gateway-server.ts', gatewayEnv(upstream.url));
  let results;
  try {
    log('1. cached-query throughput');
    const cached = await throughput(bare, gateway);
    await bare.stop();
    log('2. cache-miss latency');
    const miss = await missLatency(gateway, upstream.url);
    log('3. 100-creator batch');
    const batched = await batch(gateway, upstream);
    await gateway.stop();
    log(`4. memory (filling ${config.fillEntries} entries)`);
    const mem = await memory(upstream);
    results = {
      takenAt: new Date().toISOString(),
      machine: host,
      config,
      cachedThroughput: cached,
      missLatency: miss,
      batch: batched,
      memory: mem,
      targets: {
        cachedThroughputRatio: { target: '>= 0.7', value: cached.ratio, met: cached.ratio >= 0.7 },
        missAddedP50Ms: { target: '<= 2', value: miss.addedP50Ms, met: miss.addedP50Ms <= 2 },
        batchRatioToBound: { target: '<= 1.2', value: batched.ratioToBound, met: batched.ratioToBound <= 1.2 && batched.upstreamCalls === 100 },
        rssBytesPerEntry: { target: '<= 2048', value: mem.rssBytesPerEntry, met: mem.rssBytesPerEntry <= 2048 },
      },
      totalSeconds: 0,
    };
    results.totalSeconds = round((Date.now() - startedAt) / 1000, 1);
  } finally {
    bare.child.kill();
    gateway.child.kill();
    await upstream.close();
    await agent.close();
  }

  const rows: Array<[string, string, string]> = [
    ['cached throughput: gateway', `${results.cachedThroughput.gatewayCachedRps} req/s`, ''],
    ['cached throughput: bare Yoga { hello }', `${results.cachedThroughput.bareYogaRps} req/s`, ''],
    ['  ratio gateway / bare Yoga', `${results.cachedThroughput.ratio}×`, mark(results.targets.cachedThroughputRatio)],
    ['cache miss p50 / p99 (gateway)', `${results.missLatency.gatewayP50Ms} / ${results.missLatency.gatewayP99Ms} ms`, ''],
    ['upstream alone p50 / p99', `${results.missLatency.upstreamP50Ms} / ${results.missLatency.upstreamP99Ms} ms`, ''],
    ['  added by the gateway p50 / p99', `${results.missLatency.addedP50Ms} / ${results.missLatency.addedP99Ms} ms`, mark(results.targets.missAddedP50Ms)],
    [
      `creators(100 ids), concurrency ${results.batch.upstreamConcurrency}`,
      `${results.batch.wallMs} ms (bound ${results.batch.boundMs} ms, ${results.batch.ratioToBound}×)`,
      mark(results.targets.batchRatioToBound),
    ],
    ['  upstream calls made', String(results.batch.upstreamCalls), results.batch.upstreamCalls === 100 ? 'ok' : 'WRONG'],
    [`RSS per cached entry (${results.memory.entries} entries)`, `${results.memory.rssBytesPerEntry} B`, mark(results.targets.rssBytesPerEntry)],
    ['  heap used per cached entry', `${results.memory.heapUsedBytesPerEntry} B`, ''],
  ];
  const width = Math.max(...rows.map((row) => row[0].length));
  const valueWidth = Math.max(...rows.map((row) => row[1].length));
  log('');
  for (const [name, value, verdict] of rows) log(`${name.padEnd(width)}  ${value.padStart(valueWidth)}  ${verdict}`);
  log(`\n${results.totalSeconds} s in all; written to ${outFile.replace(root, '')}`);
  writeFileSync(outFile, `${JSON.stringify(results, null, 2)}\n`);
}

function mark(target: { target: string; value: number; met: boolean }) {
  return `${target.met ? 'meets' : 'MISSES'} target ${target.target}`;
}

await main();
