import { createServer } from 'node:http';
import { loadEnv } from './env.js';
import { createGateway } from './gateway.js';
import { createLogger } from './logger.js';
import { startSimulator } from './upstream/simulator.js';

const env = loadEnv();
const token = env.JUSTONEAPI_TOKEN;
// A password in REDIS_URL is a secret like the token: redacted from every log line, whatever quotes it.
const redisPassword = env.REDIS_URL ? decodeURIComponent(new URL(env.REDIS_URL).password) : '';
const logger = createLogger({ level: env.LOG_LEVEL, secrets: [token ?? '', redisPassword] });

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

const server = createServer(gateway.app);
server.listen(env.PORT, env.HOST, () => {
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : env.PORT;
  logger.info('gateway listening', {
    url: `http://${env.HOST === '0.0.0.0' ? 'localhost' : env.HOST}:${port}/graphql`,
    mode,
    upstream: simulator ? 'simulator' : new URL(env.JUSTONEAPI_BASE_URL).origin,
  });
});

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  logger.info('shutting down: no new connections, finishing requests in flight', { signal, timeoutMs: env.SHUTDOWN_TIMEOUT_MS });
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  // A keep-alive connection is closed as soon as its request is answered, not when the client gives up on it.
  const reaper = setInterval(() => server.closeIdleConnections(), 50);
  server.closeIdleConnections();
  let deadline: NodeJS.Timeout | undefined;
  const drained = await Promise.race([
    closed.then(() => true),
    new Promise<boolean>((resolve) => (deadline = setTimeout(() => resolve(false), env.SHUTDOWN_TIMEOUT_MS))),
  ]);
  clearInterval(reaper);
  clearTimeout(deadline);
  if (!drained) {
    // Whatever is still running (a hung upstream call) is cut off: exiting ends its sockets too.
    logger.warn('shutdown timeout: closing the connections still open', { timeoutMs: env.SHUTDOWN_TIMEOUT_MS });
    server.closeAllConnections();
    logger.info('stopped', { forced: true });
    process.exit(1);
  }
  // Only now: a request still being answered may have been waiting on the upstream pool.
  await gateway.close();
  await simulator?.close();
  logger.info('stopped', { forced: false });
  process.exit(0);
}
// A rejection nobody awaited is a bug, not a reason to drop every request in flight: log it (redacted) and keep serving.
process.on('unhandledRejection', (reason) => logger.error('unhandled promise rejection', { error: reason }));
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
