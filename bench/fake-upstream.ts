import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { documentedPayload } from '../test/fake-upstream.js';

/**
 * A lean fake Just One API for the benchmark: the documented answer for every kolId after a fixed
 * latency, counting calls. (test/fake-upstream.ts records every request for assertions, which is
 * too slow for the 50,000 calls that fill the cache here.)
 */
export async function startBenchUpstream(latencyMs: number) {
  const body = JSON.stringify({ code: 0, message: 'success', data: documentedPayload });
  const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
  let calls = 0;
  let latency = latencyMs;
  const server = createServer((_req, res) => {
    calls += 1;
    const send = () => {
      res.writeHead(200, headers);
      res.end(body);
    };
    if (latency > 0) setTimeout(send, latency);
    else send();
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    get calls() {
      return calls;
    },
    set latencyMs(value: number) {
      latency = value;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
