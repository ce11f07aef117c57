import type { IncomingMessage, Server, ServerResponse } from 'node:http';

/**
 * Lets shutdown drain keep-alive connections: once `drain()` is called, every response not yet begun is sent
 * with `Connection: close`, and so is any request a client sends on a socket it reuses meanwhile. Node keeps
 * a busy keep-alive connection open after `server.close()`, and a client that reuses its socket at once (a
 * router's connection pool) would keep it open, and be cut off, at the shutdown timeout.
 */
export function keepAliveDrain(server: Server): { drain(): void } {
  let draining = false;
  const unanswered = new Set<ServerResponse>();
  server.on('request', (_request: IncomingMessage, response: ServerResponse) => {
    if (draining) {
      response.shouldKeepAlive = false;
      return;
    }
    unanswered.add(response);
    response.once('close', () => unanswered.delete(response));
  });
  return {
    drain() {
      draining = true;
      for (const response of unanswered) if (!response.headersSent) response.shouldKeepAlive = false;
    },
  };
}
