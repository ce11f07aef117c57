import { createServer } from 'node:http';
import { loadEnv } from '../src/env.js';
import { createGateway } from '../src/gateway.js';
import { keepAliveDrain } from '../src/keep-alive-drain.js';
import { createLogger } from '../src/logger.js';
import { listenForBench } from './child-ipc.js';

/**
 * The gateway under test, in a process of its own: the same wiring as src/main.ts (createGateway,
 * the JSON logger on stdout, configuration from the environment, the keep-alive drain's response class),
 * plus an IPC channel for the benchmark.
 */
const env = loadEnv();
const token = env.JUSTONEAPI_TOKEN ?? '';
const logger = createLogger({ level: env.LOG_LEVEL, secrets: token ? [token] : [] });
const gateway = createGateway(env, { logger, mode: 'live', upstream: { baseUrl: env.JUSTONEAPI_BASE_URL, token } });
const server = createServer({ ServerResponse: keepAliveDrain().ServerResponse }, gateway.app);
listenForBench(server, () => gateway.linkStructures.size);
