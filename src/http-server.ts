import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { GraphQLError } from 'graphql';
import { keepAliveDrain } from './keep-alive-drain.js';
import type { Logger } from './logger.js';
import { codedError } from './errors.js';
import { requestIdFrom, requestIdHeader } from './request-observer.js';

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
export function createHttpServer(
  app: RequestListener,
  options: HttpServerOptions,
): { server: Server; drain(): void; closeConnectionsWithoutRequest(): void } {
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
      // Pipelined behind another request on its connection (its response has no socket yet): while draining, the one
      // before closes the connection, and this one's answer would be dropped after it had run and been paid for.
      if (keepAlive.draining && !res.socket) {
        return void refuse(req, res, options.logger, {
          status: 503,
          error: codedError('SHUTTING_DOWN'),
          headers: { 'retry-after': '0' },
          detail: 'pipelined request refused while the gateway shuts down',
        });
      }
      if (targetIsUrl(req)) return void app(req, res);
      refuse(req, res, options.logger, {
        status: 400,
        error: codedError('BAD_REQUEST', { message: 'The request’s Host header and target do not form a URL.' }),
        detail: `Host header and target (${(req.url ?? '').length} characters) do not form a URL`,
      });
    },
  );
  // Per connection, not per request: keep-alive reuses them.
  const open = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
  });
  return {
    server,
    drain: keepAlive.drain,
    /**
     * For shutdown: closes every connection with no request being answered on it: idle keep-alive ones, and ones whose
     * client is still sending headers. `server.close()` stops the checks that cut those off after `headersTimeout`, so a
     * client trickling its headers held every shutdown to SHUTDOWN_TIMEOUT_MS. (A response in progress is the socket's
     * `_httpMessage`, set when Node hands the request over and cleared when the response is done.)
     */
    closeConnectionsWithoutRequest() {
      for (const socket of open) if (!(socket as Socket & { _httpMessage?: unknown })._httpMessage) socket.destroy();
    },
  };
}

/** Whether the URL the fetch-API layer will build for a request (@whatwg-node/server's buildFullUrl) is one. */
function targetIsUrl(req: IncomingMessage): boolean {
  // Its rule: the Host header if not empty; else the socket's local IPv4 address and port; else `localhost`.
  let host = req.headers.host;
  if (!host) {
    const address = req.socket.localAddress;
    host = address && !address.includes('::') && !address.includes('ffff') ? `${address}:${req.socket.localPort ?? 80}` : 'localhost';
  }
  return URL.canParse(`http://${host}${req.url || '/graphql'}`);
}

/** Answers a request the app never sees, with a coded error and a request line. */
function refuse(
  req: IncomingMessage,
  res: ServerResponse,
  logger: Logger,
  { status, error, headers = {}, detail }: { status: number; error: GraphQLError; headers?: Record<string, string>; detail: string },
): void {
  const given = req.headers[requestIdHeader];
  const requestId = requestIdFrom(typeof given === 'string' ? given : undefined);
  const body = JSON.stringify({ errors: [{ message: error.message, extensions: error.extensions }] });
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    [requestIdHeader]: requestId,
    ...headers,
  });
  res.end(body);
  // Like a request line, without what may not be a URL: the target is only hinted at (its length), the host not at all.
  logger.info('request', { requestId, method: req.method, path: null, status, outcome: 'error', errorCodes: [error.extensions['code']], detail });
}
