import { Agent, request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../src/logger.js';
import { createUpstreamClient } from '../src/upstream/link-struct-client.js';
import { reply, startFakeUpstream } from './fake-upstream.js';
import { startMain } from './main-process.js';

const query = JSON.stringify({ query: '{ creator(kolId: "6870301416131936264") { linkStructure { summary { value } } } }' });

async function waitFor(condition: () => boolean, timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('SIGTERM', () => {
  it('stops accepting, lets the request waiting on a slow upstream finish, closes the pool and exits 0', async () => {
    const upstream = await startFakeUpstream(() => reply.ok(undefined, 1_000));
    const gateway = await startMain({ JUSTONEAPI_TOKEN: 'tok_shutdown_test', JUSTONEAPI_BASE_URL: upstream.url, UPSTREAM_RETRIES: '0' });
    try {
      expect(gateway.stdout()).toContain('OPEN GATEWAY');
      const inFlight = fetch(`${gateway.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: query });
      await waitFor(() => upstream.calls() === 1);

      gateway.child.kill('SIGTERM');
      await waitFor(() => gateway.stdout().includes('shutting down'));
      // New connections are refused while the old request is still waiting on the upstream.
      await expect(fetch(`${gateway.url}/health`)).rejects.toThrow();

      const response = await inFlight;
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({ data: { creator: { linkStructure: { summary: { value: 9875885 } } } } });
      expect(await gateway.stop()).toBe(0);
      expect(upstream.calls()).toBe(1);
      expect(gateway.stdout()).toContain('"msg":"stopped","forced":false');
    } finally {
      await gateway.stop('SIGKILL');
      await upstream.close();
    }
  });

  it('cuts off requests still running after SHUTDOWN_TIMEOUT_MS, destroys the upstream pool and exits 0 within the bound, each with its request line', async () => {
    const upstream = await startFakeUpstream(() => reply.hang());
    const gateway = await startMain({
      JUSTONEAPI_TOKEN: 'tok_shutdown_test',
      JUSTONEAPI_BASE_URL: upstream.url,
      UPSTREAM_RETRIES: '0',
      SHUTDOWN_TIMEOUT_MS: '300',
    });
    try {
      const inFlight = fetch(`${gateway.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-request-id': 'cut-off-at-shutdown' },
        body: query,
      }).then(
        () => 'answered',
        () => 'cut off',
      );
      await waitFor(() => upstream.calls() === 1);
      const started = Date.now();
      expect(await gateway.stop('SIGTERM')).toBe(0);
      // SHUTDOWN_TIMEOUT_MS, then at most a second to tear down what is left.
      expect(Date.now() - started).toBeLessThan(300 + 1_000 + 1_000);
      expect(await inFlight).toBe('cut off');
      expect(gateway.stdout()).toContain('"msg":"shutdown timeout: cutting off the requests still running"');
      expect(gateway.stdout()).toContain('"upstreamCallsInFlight":1');
      const lines = gateway
        .stdout()
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      // The request cut off still gets its line (who it was, the upstream attempt it paid for), before the process says
      // it has stopped: nothing is written after that line.
      expect(lines.filter((line) => line['msg'] === 'request')).toEqual([
        expect.objectContaining({ requestId: 'cut-off-at-shutdown', path: '/graphql', outcome: 'cancelled', upstreamAttempts: 1, clientGone: true }),
      ]);
      expect(lines.at(-1)).toMatchObject({ msg: 'stopped', forced: true });
    } finally {
      await gateway.stop('SIGKILL');
      await upstream.close();
    }
  });

  it('a client still sending its headers does not hold the exit: its connection is closed, nothing having run for it', async () => {
    const upstream = await startFakeUpstream();
    const gateway = await startMain({ JUSTONEAPI_TOKEN: 'tok_shutdown_test', JUSTONEAPI_BASE_URL: upstream.url, SHUTDOWN_TIMEOUT_MS: '10000' });
    const { port, hostname } = new URL(gateway.url);
    const socket = connect(Number(port), hostname);
    socket.on('error', () => {});
    try {
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      socket.write('POST /graphql HTTP/1.1\r\nHost: x\r\n');
      // Trickling: one header line now and then, never the end of the headers.
      const trickle = setInterval(() => socket.write('x-slow: 1\r\n'), 200);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const started = Date.now();
      expect(await gateway.stop('SIGTERM')).toBe(0);
      clearInterval(trickle);
      expect(Date.now() - started).toBeLessThan(3_000);
      expect(gateway.stdout()).toContain('"msg":"stopped","forced":false');
    } finally {
      socket.destroy();
      await gateway.stop('SIGKILL');
      await upstream.close();
    }
  });

  it('a second signal during the drain cuts off at once, and says so', async () => {
    const upstream = await startFakeUpstream(() => reply.hang());
    const gateway = await startMain({ JUSTONEAPI_TOKEN: 'tok_shutdown_test', JUSTONEAPI_BASE_URL: upstream.url, UPSTREAM_RETRIES: '0', SHUTDOWN_TIMEOUT_MS: '20000' });
    try {
      const inFlight = fetch(`${gateway.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: query }).catch(() => 'cut off');
      await waitFor(() => upstream.calls() === 1);
      const started = Date.now();
      gateway.child.kill('SIGTERM');
      await waitFor(() => gateway.stdout().includes('shutting down'));
      // Past the second in which a repeat is taken for the same stop (npm forwards the terminal's Ctrl-C).
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      gateway.child.kill('SIGINT');
      // Waiting for the exit without a signal of our own (stop() would send one more).
      await waitFor(() => gateway.child.exitCode !== null, 5_000);
      expect(gateway.child.exitCode).toBe(0);
      // Not SHUTDOWN_TIMEOUT_MS (20 s): at once, then at most the second the teardown may take.
      expect(Date.now() - started).toBeLessThan(5_000);
      await inFlight;
      expect(gateway.stdout()).toContain('"msg":"second signal while shutting down: cutting off what is still running","signal":"SIGINT"');
      expect(gateway.stdout()).toContain('"msg":"stopped","forced":true');
    } finally {
      await gateway.stop('SIGKILL');
      await upstream.close();
    }
  });

  it('a client that leaves before SIGTERM: its orphaned upstream call does not hold the exit past SHUTDOWN_TIMEOUT_MS', async () => {
    // The upstream would answer only after 15 s (its timeout); the client gives up after 1 s.
    const upstream = await startFakeUpstream(() => reply.hang());
    const gateway = await startMain({
      JUSTONEAPI_TOKEN: 'tok_shutdown_test',
      JUSTONEAPI_BASE_URL: upstream.url,
      UPSTREAM_RETRIES: '0',
      UPSTREAM_TIMEOUT_MS: '15000',
      SHUTDOWN_TIMEOUT_MS: '2000',
    });
    try {
      // As `curl --max-time 1` does: close the connection. (fetch's abort keeps the socket open in its pool.)
      await new Promise<void>((resolve, reject) => {
        const request = httpRequest(`${gateway.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, timeout: 1_000 });
        request.on('timeout', () => request.destroy());
        request.on('error', () => {}); // the "socket hang up" our own destroy() causes
        request.on('close', resolve);
        request.on('response', () => reject(new Error('answered before the client gave up')));
        request.end(query);
      });
      expect(upstream.calls()).toBe(1);

      const started = Date.now();
      expect(await gateway.stop('SIGTERM')).toBe(0);
      expect(Date.now() - started).toBeLessThan(2_000 + 1_000 + 1_000);
      expect(gateway.stdout()).toContain('"msg":"shutdown timeout: cutting off upstream calls still in flight","upstreamCallsInFlight":1');
      expect(gateway.stdout()).toContain('"msg":"stopped","forced":true');
    } finally {
      await gateway.stop('SIGKILL');
      await upstream.close();
    }
  });
});

type LogRecord = Record<string, unknown>;

describe('SIGTERM with a busy keep-alive client', () => {
  it('tells it Connection: close from then on, so the drain ends with its last answer, not the timeout', async () => {
    const upstream = await startFakeUpstream(() => reply.ok(undefined, 100));
    const gateway = await startMain({
      JUSTONEAPI_TOKEN: 'tok_keep_alive',
      JUSTONEAPI_BASE_URL: upstream.url,
      UPSTREAM_RETRIES: '0',
      SHUTDOWN_TIMEOUT_MS: '5000',
    });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const { port } = new URL(gateway.url);
    let kolId = 0;
    // One request after another on one reused socket, as a router's connection pool sends them.
    const post = () =>
      new Promise<string | undefined>((resolve, reject) => {
        const body = JSON.stringify({ query: `{ creator(kolId: "${(kolId += 1)}") { linkStructure { source } } }` });
        const sent = httpRequest(
          { host: '127.0.0.1', port, path: '/graphql', method: 'POST', agent, headers: { 'content-type': 'application/json' } },
          (response) => {
            response.resume();
            response.on('end', () => resolve(response.headers.connection));
          },
        );
        sent.on('error', reject);
        sent.end(body);
      });
    try {
      expect(await post()).toBe('keep-alive');
      const answering = post();
      await waitFor(() => upstream.calls() === 2);
      const started = Date.now();
      gateway.child.kill('SIGTERM');
      // The request in flight at the signal is answered, and told to close its connection.
      expect(await answering).toBe('close');
      // The client's next request finds the server gone: nothing keeps the drain waiting.
      await expect(post()).rejects.toThrow();
      expect(await gateway.stop()).toBe(0);
      expect(Date.now() - started).toBeLessThan(2_000);
      expect(gateway.stdout()).toContain('"msg":"stopped","forced":false');
    } finally {
      agent.destroy();
      await gateway.stop('SIGKILL');
      await upstream.close();
    }
  });
});

/** One request over a connection of its own that asks to be kept alive, as a router's pool opens them. */
function overNewConnection(url: string, path: string, body?: string) {
  const agent = new Agent({ keepAlive: true });
  return new Promise<{ status: number | undefined; connection: string | undefined; body: unknown }>((resolve, reject) => {
    const sent = httpRequest(`${url}${path}`, { method: body ? 'POST' : 'GET', agent, headers: { 'content-type': 'application/json' } }, (response) => {
      let text = '';
      response.on('data', (chunk: Buffer) => (text += chunk.toString()));
      response.on('end', () => resolve({ status: response.statusCode, connection: response.headers.connection, body: JSON.parse(text) }));
    });
    sent.on('error', reject);
    sent.end(body);
  }).finally(() => agent.destroy());
}

describe('SIGTERM with SHUTDOWN_DELAY_MS', () => {
  it('keeps serving new connections for the delay, /ready at 503 and each connection told to close, then drains and exits 0', async () => {
    const upstream = await startFakeUpstream();
    const gateway = await startMain({ JUSTONEAPI_TOKEN: 'tok_shutdown_delay', JUSTONEAPI_BASE_URL: upstream.url, SHUTDOWN_DELAY_MS: '1000' });
    try {
      // Warmed up, so what is measured below is the delay and not a first request's start-up.
      expect(await overNewConnection(gateway.url, '/graphql', query)).toMatchObject({ status: 200, connection: 'keep-alive' });
      const started = Date.now();
      gateway.child.kill('SIGTERM');
      await waitFor(() => gateway.stdout().includes('"msg":"shutdown delayed'));
      const [ready, health, answer] = await Promise.all([
        overNewConnection(gateway.url, '/ready'),
        overNewConnection(gateway.url, '/health'),
        overNewConnection(gateway.url, '/graphql', query),
      ]);
      expect(ready).toEqual({
        status: 503,
        connection: 'close',
        body: { status: 'shutting-down', breaker: 'closed', upstreamEndpoint: 'v1', redis: 'disabled' },
      });
      expect(health).toMatchObject({ status: 200, connection: 'close', body: { status: 'ok' } });
      expect(answer).toEqual({ status: 200, connection: 'close', body: { data: { creator: { linkStructure: { summary: { value: 9875885 } } } } } });
      // Exits on its own once the delay is over (stop() would send a second signal).
      await waitFor(() => gateway.child.exitCode !== null, 10_000);
      expect(gateway.child.exitCode).toBe(0);
      expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
      const stdout = gateway.stdout();
      expect(stdout).toContain('"msg":"shutdown delayed: /ready answers 503, still serving until load balancers stop sending traffic","signal":"SIGTERM","delayMs":1000');
      expect(stdout.indexOf('"msg":"shutting down: no new connections')).toBeGreaterThan(stdout.indexOf('"msg":"shutdown delayed'));
      expect(stdout).toContain('"msg":"stopped","forced":false');
    } finally {
      await gateway.stop('SIGKILL');
      await upstream.close();
    }
  });

  it('a signal repeated within a second (npm start forwarding a Ctrl-C the terminal also sent) is the same stop', async () => {
    const upstream = await startFakeUpstream();
    const gateway = await startMain({ JUSTONEAPI_TOKEN: 'tok_shutdown_delay', JUSTONEAPI_BASE_URL: upstream.url, SHUTDOWN_DELAY_MS: '1000' });
    try {
      const started = Date.now();
      gateway.child.kill('SIGINT');
      // Once the first is handled (two pending at once the kernel merges into one).
      await waitFor(() => gateway.stdout().includes('"msg":"shutdown delayed'));
      gateway.child.kill('SIGINT');
      await waitFor(() => gateway.child.exitCode !== null, 10_000);
      expect(gateway.child.exitCode).toBe(0);
      // The delay ran its course, and nothing was cut off.
      expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
      expect(gateway.stdout()).toContain('"msg":"signal repeated within a second: the shutdown already under way goes on"');
      expect(gateway.stdout()).not.toContain('second signal while shutting down');
      expect(gateway.stdout()).toContain('"msg":"stopped","forced":false');
    } finally {
      await gateway.stop('SIGKILL');
      await upstream.close();
    }
  });

  it('a second signal during the delay cuts it short and off at once, as during the drain', async () => {
    const upstream = await startFakeUpstream();
    const gateway = await startMain({ JUSTONEAPI_TOKEN: 'tok_shutdown_delay', JUSTONEAPI_BASE_URL: upstream.url, SHUTDOWN_DELAY_MS: '60000' });
    try {
      const started = Date.now();
      gateway.child.kill('SIGTERM');
      await waitFor(() => gateway.stdout().includes('"msg":"shutdown delayed'));
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      gateway.child.kill('SIGINT');
      await waitFor(() => gateway.child.exitCode !== null, 5_000);
      expect(gateway.child.exitCode).toBe(0);
      // Not the 60 s delay: at once, then at most the second the teardown may take.
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(gateway.stdout()).toContain('"msg":"second signal while shutting down: cutting off what is still running","signal":"SIGINT"');
      expect(gateway.stdout()).toContain('"msg":"stopped","forced":true');
    } finally {
      await gateway.stop('SIGKILL');
      await upstream.close();
    }
  });
});

describe('UpstreamClient close() and destroy()', () => {
  const shortVideo = (kolId: string) => ({ kolId, acceptCache: false, platform: 'SHORT_VIDEO' as const });
  // A retry waits 1–2 s: long enough that the test acts inside it, and that sleeping it out would show.
  const clientOn = (url: string, lines: LogRecord[] = []) =>
    createUpstreamClient({
      baseUrl: url,
      token: 'test-token',
      timeoutMs: 5_000,
      retries: 2,
      retryBaseMs: 2_000,
      concurrency: 2,
      endpoint: 'v1',
      logger: createLogger({ level: 'debug', write: (line) => lines.push(JSON.parse(line) as LogRecord) }),
    });

  it('close() waits for a call sleeping between attempts: its retry goes out and it answers', async () => {
    const upstream = await startFakeUpstream((request) => (request.nth === 1 ? reply.business(301) : reply.ok()));
    const lines: LogRecord[] = [];
    const client = clientOn(upstream.url, lines);
    const call = client.fetchLinkStructure(shortVideo('1'));
    // Answered 301, and now in its 1–2 s backoff.
    await waitFor(() => lines.some((line) => line['msg'] === 'upstream call failed' && line['willRetry'] === true));
    await client.close();
    await expect(call).resolves.toMatchObject({ kolId: '1', summary: { value: 9875885 } });
    expect(upstream.calls()).toBe(2);
    await upstream.close();
  });

  it('destroy() fails a call between attempts at once, and retries nothing against the destroyed pool', async () => {
    const upstream = await startFakeUpstream(() => reply.business(301));
    const lines: LogRecord[] = [];
    const client = clientOn(upstream.url, lines);
    const call = client.fetchLinkStructure(shortVideo('1')).then(
      () => 'answered',
      (error: unknown) => error,
    );
    await waitFor(() => lines.some((line) => line['msg'] === 'upstream call failed' && line['willRetry'] === true));
    const started = Date.now();
    await client.destroy();
    expect(await call).toMatchObject({ code: 'UPSTREAM_UNAVAILABLE' });
    // Not after sleeping out the 1–2 s backoff.
    expect(Date.now() - started).toBeLessThan(500);
    expect(upstream.calls()).toBe(1);
    expect(lines.filter((line) => line.msg === 'upstream call failed' && line['willRetry'] === true)).toHaveLength(1);
    await upstream.close();
  });
});
