/**
 * Profiles a server under the cached-query load of `npm run bench` (what found the costs it reports):
 *
 *   npx tsx bench/profile.ts [gateway|bare]
 *
 * Runs the server (compiled, as npm run bench does) as a child with --cpu-prof, loads it for BENCH_DURATION_SECONDS (6) after a 2 s
 * warm-up, and leaves CPU.*.cpuprofile in bench/results/profiles/ (open it in Chrome DevTools or
 * VS Code). Prints req/s and CPU per request.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { buildServers } from './build.js';
import { startBenchUpstream } from './fake-upstream.js';
import { authorizationHeader, benchApiKey, creatorQuery } from './workload.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const which = process.argv[2] === 'bare' ? 'bare' : 'gateway';
const durationSeconds = Number(process.env['BENCH_DURATION_SECONDS'] ?? 6);
const upstream = await startBenchUpstream(0);
const compiled = buildServers();
const child = fork(compiled(`bench/${which === 'bare' ? 'bare-yoga-server.ts' : 'gateway-server.ts'}`), [], {
  cwd: root,
  execArgv: ['--cpu-prof', `--cpu-prof-dir=${root}bench/results/profiles`],
  env: {
    PATH: process.env['PATH'] ?? '',
    NODE_ENV: 'production',
    JUSTONEAPI_TOKEN: 'bench-token',
    JUSTONEAPI_BASE_URL: upstream.url,
    LOG_LEVEL: 'info',
    // As in npm run bench: keys on, the per-client rate limit off.
    GATEWAY_API_KEYS: benchApiKey,
    RATE_LIMIT_PER_MINUTE: '0',
  },
  stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
});
const port = await new Promise<number>((resolve) =>
  child.on('message', (message: { type: string; port?: number }) => {
    if (message.type === 'ready' && message.port) resolve(message.port);
  }),
);
const cpuMicros = () =>
  new Promise<number>((resolve) => {
    child.once('message', (message: { micros: number }) => resolve(message.micros));
    child.send({ type: 'cpu' });
  });
const query = which === 'bare' ? '{ hello }' : creatorQuery;
const load = (duration: number) =>
  autocannon({
    url: `http://127.0.0.1:${port}/graphql`,
    method: 'POST',
    headers: { 'content-type': 'application/json', ...authorizationHeader },
    body: JSON.stringify({ query }),
    connections: 10,
    duration,
  });
await load(2);
const before = await cpuMicros();
const result = await load(durationSeconds);
const used = (await cpuMicros()) - before;
process.stdout.write(
  `${which}: ${Math.round(result.requests.total / durationSeconds)} req/s, ${Math.round(used / result.requests.total)} µs CPU per request; profile in bench/results/profiles/\n`,
);
child.kill('SIGTERM');
await new Promise((resolve) => child.once('exit', resolve));
await upstream.close();
