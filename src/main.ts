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
  logger.info('shutting down', { signal });
  // Stop accepting, let in-flight requests finish, then release the upstream pool.
  server.close();
  server.closeIdleConnections();
  await new Promise<void>((resolve) => server.once('close', resolve));
  await gateway.close();
  await simulator?.close();
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
