/**
 * The gateway process, loaded by src/main.ts once it holds the signals: configuration, the gateway, the HTTP server,
 * shutdown, and listening (after Redis, when it is configured).
 */
import { loadEnv } from './env.js';
import { createGateway } from './gateway.js';
import { createHttpServer } from './http-server.js';
import { takeHeldSignals } from './held-signals.js';
import { createLogger } from './logger.js';
import { redisConnectTimeoutMs } from './redis-client.js';
import { startSimulator } from './upstream/simulator.js';

const env = loadEnv();
const token = env.JUSTONEAPI_TOKEN;
// A password in REDIS_URL is a secret like the token: redacted from every log line, whatever quotes it.
const redisPassword = env.REDIS_URL ? decodeURIComponent(new URL(env.REDIS_URL).password) : '';
// A log pipe that closes (a collector that died, `| head`) must not take the gateway and its requests down: an unhandled
// EPIPE on stdout did. Lines are dropped from then on.
let logPipeBroken = false;
process.stdout.on('error', () => (logPipeBroken = true));
process.stderr.on('error', () => undefined);
const logger = createLogger({
  level: env.LOG_LEVEL,
  secrets: [token ?? '', redisPassword],
  write: (line) => {
    if (!logPipeBroken) process.stdout.write(`${line}\n`);
  },
});

// No token: answer from the built-in simulator so a fresh clone works offline, and say so loudly.
const simulator = token ? undefined : await startSimulator();
if (simulator) {
  logger.warn('DEMO MODE: JUSTONEAPI_TOKEN is not set, answering from the built-in upstream simulator (made-up data)', {
    simulator: simulator.url,
  });
}
const mode = simulator ? 'demo' : 'live';

const gateway = createGateway(env, {
  logger,
  mode,
  upstream: simulator ? { baseUrl: simulator.url, token: 'demo' } : { baseUrl: env.JUSTONEAPI_BASE_URL, token: token ?? '' },
});

const { server, drain, closeConnectionsWithoutRequest } = createHttpServer(gateway.app, { logRefusal: gateway.logRefusal });
// A HOST that does not resolve, a PORT already taken or not ours to bind: said in one line, exit 1 (not a stack trace).
server.on('error', (error: NodeJS.ErrnoException) => {
  logger.error('cannot listen', { host: env.HOST, port: env.PORT, code: error.code, error: error.message });
  // LOG_LEVEL=silent writes nothing, but a process that exits at start must say why somewhere.
  if (env.LOG_LEVEL === 'silent') process.stderr.write(`cannot listen on ${env.HOST}:${env.PORT}: ${error.code ?? error.message}\n`);
  process.exit(1);
});

// After SHUTDOWN_TIMEOUT_MS, how long tearing down what is left (pool, Redis, simulator) may take before exiting anyway.
const teardownGraceMs = 1_000;

let stopping = false;
/** The longest a starting replica waits for Redis before it listens anyway. */
const maxRedisWaitMs = 5_000;
// A signal while waiting for Redis at start: stop waiting, and never listen.
const startAborted = new AbortController();
// A second signal during the drain (Ctrl-C twice): stop waiting, cut everything off now.
let forceNow: () => void = () => undefined;
const forced = new Promise<void>((resolve) => (forceNow = resolve));
// A signal within this long of the first is the same stop told twice, not a second one: under `npm start` a terminal's
// Ctrl-C reaches node from the terminal and again from npm, and a service manager signals every process of the group.
const repeatWindowMs = 1_000;
let firstSignalAt = 0;
async function shutdown(signal: string) {
  if (stopping && Date.now() - firstSignalAt < repeatWindowMs) {
    logger.info('signal repeated within a second: the shutdown already under way goes on', { signal });
    return;
  }
  if (stopping) {
    logger.warn('second signal while shutting down: cutting off what is still running', { signal });
    forceNow();
    return;
  }
  stopping = true;
  firstSignalAt = Date.now();
  startAborted.abort();
  // Only for a replica that listens: one stopped while it waited for Redis has had no traffic to hand over.
  if (env.SHUTDOWN_DELAY_MS > 0 && server.listening) {
    // Load balancers learn of a stopping replica after it does (Kubernetes removes endpoints asynchronously) and send
    // new connections meanwhile: they are still served. /ready says to stop choosing this replica, and every response
    // closes its connection, so a client's pool reconnects through the balancer instead of staying pinned here.
    gateway.announceShutdown();
    drain();
    logger.info('shutdown delayed: /ready answers 503, still serving until load balancers stop sending traffic', {
      signal,
      delayMs: env.SHUTDOWN_DELAY_MS,
    });
    await waitUnlessForced(env.SHUTDOWN_DELAY_MS);
  }
  // Counted from here, not from the signal: the drain gets all of it, whatever the delay.
  const deadline = Date.now() + env.SHUTDOWN_TIMEOUT_MS;
  logger.info('shutting down: no new connections, finishing requests in flight', { signal, timeoutMs: env.SHUTDOWN_TIMEOUT_MS });
  drain();
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  // A keep-alive connection is closed as soon as its request is answered, not when the client gives up on it; and one
  // whose client is still sending a request's headers is closed too (nothing has run for it).
  const reaper = setInterval(closeConnectionsWithoutRequest, 50);
  closeConnectionsWithoutRequest();
  const drained = await settlesBy(closed, deadline);
  clearInterval(reaper);
  if (!drained) {
    logger.warn('shutdown timeout: cutting off the requests still running', {
      timeoutMs: env.SHUTDOWN_TIMEOUT_MS,
      upstreamCallsInFlight: gateway.upstream.inFlight,
    });
    server.closeAllConnections();
  }
  // Only now: a request still being answered may have been waiting on the upstream pool. An upstream call can
  // outlive its request (the client gave up), and the pool's graceful close waits for it: it gets what is left.
  const released = drained && (await settlesBy(gateway.close(), deadline));
  if (drained && !released) {
    logger.warn('shutdown timeout: cutting off upstream calls still in flight', { upstreamCallsInFlight: gateway.upstream.inFlight });
  }
  if (!released) {
    // Each upstream call in flight fails at once; then Redis closes, once the fills those calls held have announced their
    // failure and released their locks (other replicas would otherwise wait the locks out). Bounded; exiting drops the rest.
    const teardownDeadline = Date.now() + teardownGraceMs;
    await settlesBy(gateway.upstream.destroy(), teardownDeadline);
    await settlesBy(gateway.sharedTier?.close() ?? Promise.resolve(), teardownDeadline);
    // The requests cut off finish now that their calls have failed: their lines (client, upstream attempts paid for,
    // `cancelled`) are written before the exit, not lost with it.
    await settlesBy(gateway.requestLinesWritten(), teardownDeadline);
  }
  await settlesBy(simulator?.close() ?? Promise.resolve(), Date.now() + teardownGraceMs);
  logger.info('stopped', { forced: !released });
  process.exit(0);
}

/** Resolves after `ms`, or at a second signal. */
async function waitUnlessForced(ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([new Promise((resolve) => (timer = setTimeout(resolve, ms))), forced]);
  } finally {
    clearTimeout(timer);
  }
}

/** Whether `work` finishes before `deadline` (epoch ms). A failure counts as not finished: what follows forces. */
async function settlesBy(work: Promise<unknown>, deadline: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()))));
  const done = work.then(
    () => true,
    (error: unknown) => {
      logger.warn('shutdown step failed', { error });
      return false;
    },
  );
  try {
    return await Promise.race([done, late, forced.then(() => false)]);
  } finally {
    clearTimeout(timer);
  }
}
// A rejection nobody awaited is a bug, not a reason to drop every request in flight: log it (redacted) and keep serving.
process.on('unhandledRejection', (reason) => logger.error('unhandled promise rejection', { error: reason }));
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
// Those that came while the gateway loaded (src/main.ts): each as if it came now (two within a second are one stop).
for (const signal of takeHeldSignals()) void shutdown(signal);

// Traffic only once Redis can answer: a replica that listened first paid the upstream for creators Redis already held
// (20 calls in the first few hundred ms of a cold replica under load). Bounded by the time one connection attempt may
// take: a Redis outage must never keep the gateway from starting, and without Redis it serves as it does whenever
// Redis is down. Without REDIS_URL, nothing to wait for.
if (gateway.sharedTier) {
  // Capped: a long REDIS_TIMEOUT_MS must not leave a replica unlistening through a Redis outage long enough for a
  // liveness probe to restart it again and again.
  const timeoutMs = Math.min(maxRedisWaitMs, redisConnectTimeoutMs(env.REDIS_TIMEOUT_MS));
  logger.info('waiting for redis before listening', { timeoutMs });
  const ready = await gateway.sharedTier.whenReady(timeoutMs, startAborted.signal);
  if (!ready && !stopping) {
    logger.warn('redis not ready in time: listening anyway, answering from this process and the upstream until it is', { timeoutMs });
  }
}
if (!stopping) {
  server.listen(env.PORT, env.HOST, () => {
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : env.PORT;
    logger.info('gateway listening', {
      url: `http://${env.HOST === '0.0.0.0' ? 'localhost' : env.HOST.includes(':') ? `[${env.HOST}]` : env.HOST}:${port}/graphql`,
      mode,
      upstream: simulator ? 'simulator' : new URL(env.JUSTONEAPI_BASE_URL).origin,
    });
  });
}
