/**
 * Where a cache miss's time goes inside the gateway (what `npm run bench` reports as one figure):
 *
 *   npx tsx bench/trace-miss.ts
 *
 * Runs the compiled gateway and the bench's bare Yoga proxy as children with bench/miss-segments.ts loaded, against
 * the bench's fake upstream, and sends misses one at a time, to each in turn: first with no upstream latency
 * (back-to-back: the code and data a miss uses stay in the CPU's caches), then with BENCH_UPSTREAM_LATENCY_MS (20),
 * where the servers sit idle through every call as they do in the bench. Prints the median time before the upstream
 * call, the call, and after the answer: the same work, timed hot and after an idle wait, in the gateway and in Yoga.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { buildServers } from './build.js';
import { authorizationHeader, benchApiKey } from './workload.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const latencyMs = Number(process.env['BENCH_UPSTREAM_LATENCY_MS'] ?? 20);
const samples = 400;
const compiled = buildServers();

function start(script: string, env: Record<string, string>, execArgv: string[] = []) {
  const child = fork(compiled(script), [], {
    cwd: root,
    execArgv,
    env: { PATH: process.env['PATH'] ?? '', NODE_ENV: 'production', ...env },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const ask = <T>(type: string, extra: Record<string, unknown> = {}) =>
    new Promise<T>((resolve) => {
      const listener = (message: { type: string }) => {
        if (message.type !== type) return;
        child.off('message', listener);
        resolve(message as T);
      };
      child.on('message', listener);
      child.send({ type, ...extra });
    });
  return new Promise<{ url: string; ask: typeof ask; stop(): void }>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)));
    child.on('message', (message: { type: string; port?: number }) => {
      if (message.type === 'ready') resolve({ url: `http://127.0.0.1:${message.port}`, ask, stop: () => child.kill() });
    });
  });
}

const upstream = await start('bench/upstream-server.ts', { BENCH_UPSTREAM_LATENCY_MS: '0' });
// As in npm run bench: API keys on, the per-client rate limit off, no retries.
const segments = ['--import', compiled('bench/miss-segments.ts')];
const gateway = await start(
  'bench/gateway-server.ts',
  {
    JUSTONEAPI_TOKEN: 'bench-token',
    JUSTONEAPI_BASE_URL: upstream.url,
    UPSTREAM_CONCURRENCY: '8',
    UPSTREAM_RETRIES: '0',
    LOG_LEVEL: 'info',
    GATEWAY_API_KEYS: benchApiKey,
    RATE_LIMIT_PER_MINUTE: '0',
  },
  segments,
);
// The yardstick of npm run bench: Yoga's defaults, the same upstream call, nothing else.
const bareYoga = await start('bench/bare-yoga-proxy.ts', { BENCH_UPSTREAM_URL: upstream.url }, segments);
const agent = new Agent({ connections: 10 });
const query = /* GraphQL */ `query Miss($kolId: ID!) { creator(kolId: $kolId) { linkStructure { summary { value } } } }`;
let next = 4_000_000_000_000_000;
const miss = async (server: { url: string }) => {
  const response = await request(`${server.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...authorizationHeader },
    body: JSON.stringify({ query, variables: { kolId: String((next += 1)) } }),
    dispatcher: agent,
  });
  if (response.statusCode !== 200) throw new Error(`miss answered ${response.statusCode}: ${await response.body.text()}`);
  await response.body.text();
};
type Segments = { requests: number; beforeCallMs: number; upstreamMs: number; afterAnswerMs: number; ownMs: number };
async function measure(latency: number): Promise<Segments[]> {
  await upstream.ask('latency', { ms: latency });
  for (const server of servers) await server.ask('segments');
  // In turns, so both servers meet the same moments of a shared machine.
  for (let index = 0; index < samples; index += 1) for (const server of servers) await miss(server);
  return Promise.all(servers.map((server) => server.ask<Segments>('segments')));
}

const servers = [gateway, bareYoga];
try {
  // Warm-up as in npm run bench: V8 optimises the miss path only after some thousands of runs.
  await Promise.all(
    Array.from({ length: 10 }, async () => {
      for (let index = 0; index < 500; index += 1) for (const server of servers) await miss(server);
    }),
  );
  const hot = await measure(0);
  const idle = await measure(latencyMs);
  const cell = (value: number) => value.toFixed(3).padStart(9);
  const row = (name: string, pick: (s: Segments) => number) =>
    process.stdout.write(`${name.padEnd(34)}${hot.map(pick).map(cell).join('')}  ${idle.map(pick).map(cell).join('')}\n`);
  process.stdout.write(`median ms, ${samples} misses each            back-to-back   upstream ${latencyMs} ms (idle meanwhile)\n`);
  const names = ['gateway', 'Yoga'].map((name) => name.padStart(9)).join('');
  process.stdout.write(`${''.padEnd(34)}${names}  ${names}\n`);
  row('request to upstream call', (s) => s.beforeCallMs);
  row('upstream call (to its headers)', (s) => s.upstreamMs);
  row('upstream answer to response sent', (s) => s.afterAnswerMs);
  row('own time (both ends)', (s) => s.ownMs);
} finally {
  for (const server of [...servers, upstream]) server.stop();
  await agent.close();
}
