import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { keepAliveDrain } from './keep-alive-drain.js';
import type { Logger } from './logger.js';
import { requestIdHeader, requestIdPattern } from './request-observer.js';

export interface HttpServerOptions {
  logger: Logger;
  /** How long a client may take to send a request's headers (Node's default: 60 s). */
  headersTimeoutMs?: number;
  /** How long a client may take to send a whole request, body included (Node's default: 300 s). Not the answer's time. */
  requestTimeoutMs?: number;
}

/**
 * The gateway's `node:http` server. Over Node's defaults:
 * - a client that trickles a request in (headers, or a body after an early 401) is cut off in tens of seconds, not five
 *   minutes: each such connection holds a socket and memory, and a few thousand of them hold the process;
 * - a request whose `Host` header and target do not make a URL (`Host: a b`, an absolute-form target, `OPTIONS *`)
 *   gets a coded 400 and a log line; the fetch-API layer under Yoga answered it 500 with a stack trace naming paths;
 * - shutdown drains keep-alive connections (`drain()`, see keep-alive-drain.ts).
 */
export function createHttpServer(app: RequestListener, options: HttpServerOptions): { server: Server; drain(): void } {
  const keepAlive = keepAliveDrain();
  const headersTimeout = options.headersTimeoutMs ?? 15_000;
  const server = createServer(
    {
      ServerResponse: keepAlive.ServerResponse,
      headersTimeout,
      requestTimeout: options.requestTimeoutMs ?? 30_000,
      // How often Node looks for requests past those deadlines (default 30 s, as long as the deadline itself).
      connectionsCheckingInterval: Math.min(2_000, headersTimeout),
    },
    (req, res) => {
      if (targetIsUrl(req)) return void app(req, res);
      refuseBadTarget(req, res, options.logger);
    },
  );
  return { server, drain: keepAlive.drain };
}

/** The URL the fetch-API layer builds from a request (@whatwg-node/server's buildFullUrl), checked without building it twice. */
function targetIsUrl(req: IncomingMessage): boolean {
  const host = req.headers.host;
  // No Host header: that layer uses the socket's address, always a URL. A target in origin form (`/…`) after a
  // well-formed host is the common case, checked in full all the same: a host such as `x:abc` is not one.
  return host === undefined || URL.canParse(`http://${host}${req.url ?? '/'}`);
}

function refuseBadTarget(req: IncomingMessage, res: ServerResponse, logger: Logger): void {
  const given = req.headers[requestIdHeader];
  const requestId = typeof given === 'string' && requestIdPattern.test(given) ? given : randomUUID();
  const body = JSON.stringify({
    errors: [{ message: 'The request’s Host header and target do not form a URL.', extensions: { code: 'BAD_REQUEST', retryable: false } }],
  });
  res.writeHead(400, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    [requestIdHeader]: requestId,
  });
  res.end(body);
  // Like a request line, without what is not a URL: the target is only hinted at (its length), the host not at all.
  logger.info('request', {
    requestId,
    method: req.method,
    path: null,
    status: 400,
    outcome: 'error',
    errorCodes: ['BAD_REQUEST'],
    detail: `Host header and target (${(req.url ?? '').length} characters) do not form a URL`,
  });
}
