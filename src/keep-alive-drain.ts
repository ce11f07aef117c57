import { ServerResponse, type IncomingMessage } from 'node:http';

/**
 * Lets shutdown drain keep-alive connections: once `drain()` is called, every response whose headers are not yet
 * written is sent with `Connection: close`, and so is any request a client sends on a socket it reuses meanwhile.
 * Node keeps a busy keep-alive connection open after `server.close()`, and a client that reuses its socket at once
 * (a router's connection pool) would keep it open, and be cut off, at the shutdown timeout.
 *
 * The server is made with `ServerResponse` below: every response passes through `writeHead` (Node's implicit
 * headers included), so the check costs nothing per request until shutdown and keeps no list of responses.
 */
export function keepAliveDrain(): { ServerResponse: typeof ServerResponse<IncomingMessage>; drain(): void; readonly draining: boolean } {
  let draining = false;
  class DrainingResponse extends ServerResponse<IncomingMessage> {}
  const writeHead = ServerResponse.prototype.writeHead as (this: ServerResponse, ...args: unknown[]) => ServerResponse;
  DrainingResponse.prototype.writeHead = function (this: ServerResponse, ...args: unknown[]) {
    if (draining) {
      this.shouldKeepAlive = false;
      // A `Connection` header set by hand wins over shouldKeepAlive: Yoga's streaming answers (SSE, multipart) set
      // `keep-alive`, and kept their connections open through the drain. (Removed instead, Node would send none.)
      if (this.hasHeader('connection')) this.setHeader('connection', 'close');
      // The headers are whichever argument after the status is an object: (status, headers[, undefined]) or (status, text, headers).
      for (let index = 1; index < args.length; index += 1) {
        if (typeof args[index] === 'object' && args[index] !== null) args[index] = closingConnection(args[index] as object);
      }
    }
    return writeHead.apply(this, args);
  } as ServerResponse['writeHead'];
  return {
    ServerResponse: DrainingResponse,
    drain() {
      draining = true;
    },
    get draining() {
      return draining;
    },
  };
}

/** `writeHead`'s headers (an object, a flat list or a list of pairs) with any `Connection` saying `close`. */
function closingConnection(headers: object): object {
  const isConnection = (name: unknown) => typeof name === 'string' && name.toLowerCase() === 'connection';
  if (!Array.isArray(headers)) return Object.fromEntries(Object.entries(headers).map(([name, value]) => [name, isConnection(name) ? 'close' : value]));
  if (headers.every((entry) => Array.isArray(entry))) return headers.map(([name, value]) => [name, isConnection(name) ? 'close' : value]);
  return headers.map((item, index) => (index % 2 === 1 && isConnection(headers[index - 1]) ? 'close' : item));
}
