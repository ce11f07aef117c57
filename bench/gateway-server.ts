import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadEnv } from '../src/env.js';
import { createGateway } from '../src/gateway.js';
import { createLogger } from '../src/logger.js';

/**
 * The gateway under test, in a process of its own: the same wiring as src/main.ts (createGateway,
 * the JSON logger on stdout, configuration from the environment), plus an IPC channel so the
 * benchmark can learn the port and ask for a garbage collection before reading memory.
 */
const env = loadEnv();
const token = env.JUSTONEAPI_TOKEN ?? '';
const logger = createLogger({ level: env.LOG_LEVEL, secrets: token ? [token] : [] });
const gateway = createGateway(env, { logger, mode: 'live', upstream: { baseUrl: env.JUSTONEAPI_BASE_URL, token } });
const server = createServer(gateway.app);

process.on('message', (message: { type: string }) => {
  if (message.type !== 'memory') return;
  // Two full collections, so what is left is what the process holds on to.
  globalThis.gc?.();
  globalThis.gc?.();
  process.send?.({ type: 'memory', usage: process.memoryUsage(), cacheEntries: gateway.linkStructures.size });
});

server.listen(0, '127.0.0.1', () => {
  process.send?.({ type: 'ready', port: (server.address() as AddressInfo).port });
});
