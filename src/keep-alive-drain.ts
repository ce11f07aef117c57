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
export function keepAliveDrain(): { ServerResponse: typeof ServerResponse<IncomingMessage>; drain(): void } {
  let draining = false;
  class DrainingResponse extends ServerResponse<IncomingMessage> {}
  const writeHead = ServerResponse.prototype.writeHead as (this: ServerResponse, ...args: unknown[]) => ServerResponse;
  DrainingResponse.prototype.writeHead = function (this: ServerResponse, ...args: unknown[]) {
    if (draining) this.shouldKeepAlive = false;
    return writeHead.apply(this, args);
  } as ServerResponse['writeHead'];
  return {
    ServerResponse: DrainingResponse,
    drain() {
      draining = true;
    },
  };
}
