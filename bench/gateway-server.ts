import { loadEnv } from '../src/env.js';
import { createGateway } from '../src/gateway.js';
import { createHttpServer } from '../src/http-server.js';
import { createLogger } from '../src/logger.js';
import { listenForBench } from './child-ipc.js';

/**
 * The gateway under test, in a process of its own: the same wiring as src/serve.ts (createGateway,
 * the JSON logger on stdout, configuration from the environment, src/http-server.ts's server: timeouts, target check, keep-alive drain),
 * plus an IPC channel for the benchmark.
 */
const env = loadEnv();
const token = env.JUSTONEAPI_TOKEN ?? '';
const logger = createLogger({ level: env.LOG_LEVEL, secrets: token ? [token] : [] });
const gateway = createGateway(env, { logger, mode: 'live', upstream: { baseUrl: env.JUSTONEAPI_BASE_URL, token } });
listenForBench(createHttpServer(gateway.app, { logRefusal: gateway.logRefusal }).server, () => gateway.linkStructures.size);
