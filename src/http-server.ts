import { STATUS_CODES, createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { GraphQLError } from 'graphql';
import { keepAliveDrain } from './keep-alive-drain.js';
import { codedError } from './errors.js';
import { answeredByHttpServer, requestIdFrom, requestIdHeader, type HttpRefusal } from './request-observer.js';

export interface HttpServerOptions {
  /**
   * Writes the log line and records the metrics of a request answered here, without the app, as the app's request
   * observer does for its own (the gateway's `logRefusal`).
   */
  logRefusal(refusal: HttpRefusal): void;
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
 * - a request Node cannot read (malformed, headers too large, not arrived in time), which Node answered with a bare
 *   status line, gets a coded body, an `x-request-id` and a log line (`clientError` below); so do the two requests
 *   Node refused itself: HTTP/1.1 without a `Host` header (400), an `Expect` other than `100-continue` (417);
 * - shutdown drains keep-alive connections (`drain()`, see keep-alive-drain.ts).
 */
export function createHttpServer(
  app: RequestListener,
  options: HttpServerOptions,
): { server: Server; drain(): void; closeConnectionsWithoutRequest(): void } {
  const keepAlive = keepAliveDrain();
  const headersTimeout = options.headersTimeoutMs ?? 15_000;
  // The last request of each connection handed over here: one still arriving when Node gives up on it has its line
  // written by whatever answered it (the app, or refuse()).
  const handedOver = new WeakMap<Socket, IncomingMessage>();
  const received = (req: IncomingMessage): string => {
    handedOver.set(req.socket, req);
    return nameRequest(req);
  };
  const server = createServer(
    {
      ServerResponse: keepAlive.ServerResponse,
      headersTimeout,
      requestTimeout: options.requestTimeoutMs ?? 30_000,
      // How often Node looks for requests past those deadlines (default 30 s, as long as the deadline itself).
      connectionsCheckingInterval: Math.min(2_000, headersTimeout),
      // Checked below instead, to answer with a code, an id and a log line.
      requireHostHeader: false,
    },
    (req, res) => {
      const requestId = received(req);
      // Pipelined behind another request on its connection (its response has no socket yet): while draining, the one
      // before closes the connection, and this one's answer would be dropped after it had run and been paid for.
      if (keepAlive.draining && !res.socket) {
        return void refuse(req, res, requestId, options.logRefusal, {
          status: 503,
          error: codedError('SHUTTING_DOWN'),
          headers: { 'retry-after': '0' },
          detail: 'pipelined request refused while the gateway shuts down',
        });
      }
      // Node's own rule (RFC 9112: a server must answer 400), and like Node's answer it closes the connection.
      if (req.httpVersionMajor === 1 && req.httpVersionMinor === 1 && req.headers.host === undefined) {
        return void refuse(req, res, requestId, options.logRefusal, {
          status: 400,
          error: codedError('BAD_REQUEST', { message: 'An HTTP/1.1 request needs a Host header.' }),
          headers: { connection: 'close' },
          detail: 'HTTP/1.1 request without a Host header',
        });
      }
      if (targetIsUrl(req)) return void app(req, res);
      refuse(req, res, requestId, options.logRefusal, {
        status: 400,
        error: codedError('BAD_REQUEST', { message: 'The request’s Host header and target do not form a URL.' }),
        detail: `Host header and target (${(req.url ?? '').length} characters) do not form a URL`,
      });
    },
  );
  // An HTTP/1.1 `Expect` other than `100-continue`, which Node answers 417 itself unless this event has a listener.
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    refuse(req, res, received(req), options.logRefusal, {
      status: 417,
      error: codedError('BAD_REQUEST', { message: 'The gateway cannot meet the request’s Expect header.' }),
      detail: 'Expect header other than 100-continue',
    });
  });
  // CONNECT (a proxy tunnel), which Node hands to this event and, with no listener, answers by closing the connection
  // without a word. No route here takes it: 405 with a code, an id and a line (its target is an authority, not a path).
  server.on('connect', (req: IncomingMessage, socket: Socket) => {
    const requestId = received(req);
    const startedAt = performance.now();
    const error = codedError('BAD_REQUEST', { message: 'The gateway is not a proxy: CONNECT is not answered here.' });
    socket.end(closingAnswer(405, error, requestId, 'allow: GET, HEAD, POST\r\n'));
    options.logRefusal({
      requestId,
      status: 405,
      code: String(error.extensions['code']),
      detail: 'CONNECT request: the gateway is not a proxy',
      remoteAddress: req.socket.remoteAddress,
      request: { method: 'CONNECT', target: req.url ?? '', headers: req.headers, durationMs: performance.now() - startedAt },
    });
  });
  // Instead of Node's own answer to a request it cannot read, which is a bare status line.
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
    try {
      answerUnreadable(error, socket, handedOver.get(socket), options.logRefusal);
    } finally {
      // With the error, as Node does: the app's request observer reads a 408 from it (`socket.errored`).
      socket.destroy(error);
    }
  });
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

/**
 * A request's id, decided before the app sees it: the caller's `x-request-id` when well-formed (the app keeps it), else
 * a new UUID, put in the request's headers for the app to take. A request Node cuts off while the app reads its body
 * gets its 408 from `answerUnreadable`, which must carry the id of the app's line for that request.
 */
function nameRequest(req: IncomingMessage): string {
  const given = req.headers[requestIdHeader];
  const requestId = requestIdFrom(typeof given === 'string' ? given : undefined);
  if (requestId !== given) req.headers[requestIdHeader] = requestId;
  return requestId;
}

/** The response in progress on a connection, as Node's own `clientError` handling reads it. */
type HttpSocket = Socket & { _httpMessage?: (ServerResponse & { _headerSent?: boolean }) | null };

/**
 * What Node's default `clientError` handling does (a status line, then the socket destroyed), with a coded body and an
 * `x-request-id`, and a log line. As Node does, it writes only to a socket still open and only before any of a response
 * in progress has been written; a client that reset its connection gets nothing.
 */
function answerUnreadable(
  error: NodeJS.ErrnoException,
  socket: HttpSocket,
  lastRequest: IncomingMessage | undefined,
  logRefusal: (refusal: HttpRefusal) => void,
): void {
  if (error.code === 'ECONNRESET' || socket.destroyed || !socket.writable) return;
  const inProgress = socket._httpMessage;
  if (inProgress?._headerSent) return;
  // Node reads a connection in order, so what it failed on is the last request handed over if that one is still
  // arriving (its body cut off): its line is written by what answered it, and this answer carries its id and writes no
  // line. Else it failed on bytes after every request handed over, one of which may still be being answered: a new id.
  const handed = lastRequest && !lastRequest.complete ? lastRequest : undefined;
  const given = handed?.headers[requestIdHeader];
  const requestId = requestIdFrom(typeof given === 'string' ? given : undefined);
  const { status, error: coded, detail } = unreadable(error.code);
  socket.write(closingAnswer(status, coded, requestId));
  const code = String(coded.extensions['code']);
  if (!handed) logRefusal({ requestId, status, code, detail, remoteAddress: socket.remoteAddress });
  // Its body unreadable, not late (a 408 is the client's doing, and its line says `cancelled`): the app's line says what it got.
  else if (error.code !== 'ERR_HTTP_REQUEST_TIMEOUT') answeredByHttpServer.set(handed, { status, code, detail });
}

/** Node's status for what it could not read (as its own handler answers), with the coded error and the line's detail. */
function unreadable(code: string | undefined): { status: number; error: GraphQLError; detail: string } {
  // Node's (or llhttp's) name for what went wrong; never the bytes the client sent.
  const named = typeof code === 'string' && /^[A-Z0-9_]{1,64}$/.test(code) ? code : 'unknown';
  switch (named) {
    case 'HPE_HEADER_OVERFLOW':
      return {
        status: 431,
        error: codedError('BAD_REQUEST', { message: 'The request’s headers are too large.' }),
        detail: `request headers over Node's size limit (${named})`,
      };
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return {
        status: 413,
        error: codedError('BAD_REQUEST', { message: 'A chunk extension of the request body is too large.' }),
        detail: `chunk extension over Node's size limit (${named})`,
      };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return {
        status: 408,
        error: codedError('BAD_REQUEST', { message: 'The request did not arrive in time.' }),
        detail: `request headers not received within the deadline (${named})`,
      };
    default:
      return {
        status: 400,
        error: codedError('BAD_REQUEST', { message: 'The request is not well-formed HTTP.' }),
        detail: `Node could not parse the request (${named})`,
      };
  }
}

/** A whole HTTP/1.1 answer with a coded body, written straight to a socket that is then closed (no ServerResponse to use). */
function closingAnswer(status: number, error: GraphQLError, requestId: string, moreHeaders = ''): string {
  const body = codedBody(error);
  return (
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${moreHeaders}connection: close\r\ncontent-type: application/json; charset=utf-8\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\n${requestIdHeader}: ${requestId}\r\n\r\n${body}`
  );
}

function codedBody(error: GraphQLError): string {
  return JSON.stringify({ errors: [{ message: error.message, extensions: error.extensions }] });
}

/** Answers a request the app never sees, with a coded error; its line and metrics are the observer's (`logRefusal`). */
function refuse(
  req: IncomingMessage,
  res: ServerResponse,
  requestId: string,
  logRefusal: (refusal: HttpRefusal) => void,
  { status, error, headers = {}, detail }: { status: number; error: GraphQLError; headers?: Record<string, string>; detail: string },
): void {
  const startedAt = performance.now();
  const body = codedBody(error);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    [requestIdHeader]: requestId,
    ...headers,
  });
  res.end(body);
  logRefusal({
    requestId,
    status,
    code: String(error.extensions['code']),
    // Without what may not be a URL: the target is only hinted at (its length), the host not at all.
    detail,
    remoteAddress: req.socket.remoteAddress,
    request: { method: req.method ?? '', target: req.url ?? '', headers: req.headers, durationMs: performance.now() - startedAt },
  });
}
