import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { createHttpServer } from '../src/http-server.js';
import { reply, startFakeUpstream, type FakeBehaviour } from './fake-upstream.js';
import { createTestGateway } from './gateway.js';
import { sample, scrapeMetrics } from './metrics-text.js';

/** The whole line of a request Node could not read (src/http-server.ts's `clientError`): where it was going is not known. */
function unreadableLine(requestId: string | undefined, status: number, detail: unknown) {
  return {
    time: expect.any(String),
    level: 'info',
    msg: 'request',
    requestId,
    method: null,
    path: null,
    status,
    client: 'ip:127.0.0.1',
    outcome: 'error',
    errorCodes: ['BAD_REQUEST'],
    detail,
  };
}

/** The whole line of a request to /graphql that src/http-server.ts refused before the app (client `key:1`): a 401's fields and `detail`. */
function refusedGraphqlLine(fields: { requestId: string | undefined; method: string; status: number; code: string; detail: unknown }) {
  return {
    time: expect.any(String),
    level: 'info',
    msg: 'request',
    requestId: fields.requestId,
    method: fields.method,
    path: '/graphql',
    status: fields.status,
    durationMs: expect.any(Number),
    client: 'key:1',
    operation: null,
    outcome: 'error',
    upstreamCalls: 0,
    upstreamAttempts: 0,
    cacheHits: 0,
    cacheJoins: 0,
    redisHits: 0,
    staleServed: 0,
    errorCodes: [fields.code],
    failedKolIds: [],
    detail: fields.detail,
  };
}

/** The real app behind src/http-server.ts on a loopback port, with deadlines short enough for a test. */
async function serve(
  timeouts: { headersTimeoutMs?: number; requestTimeoutMs?: number } = {},
  vars: Record<string, string> = {},
  behaviour?: FakeBehaviour,
) {
  const upstream = await startFakeUpstream(behaviour);
  const gateway = createTestGateway(upstream.url, vars);
  const { server, drain } = createHttpServer(gateway.app, { logRefusal: gateway.logRefusal, ...timeouts });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await gateway.close();
    await upstream.close();
  });
  // Request lines are written once the current I/O is done: by the time a test looks, after its socket closed.
  // Not the tests' own scrapes'.
  const lines = () => gateway.logs.filter((line) => line['msg'] === 'request' && line['path'] !== '/metrics');
  return { port: (server.address() as AddressInfo).port, lines, upstream, gateway, drain };
}

/** Writes raw bytes (what fetch would refuse to send) and collects what comes back until the server closes. */
function raw(port: number, chunks: string[], { endAfterMs = 400 }: { endAfterMs?: number } = {}) {
  return new Promise<{ text: string; closedAfterMs: number }>((resolve, reject) => {
    const started = Date.now();
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
    socket.on('error', reject);
    socket.on('close', () => resolve({ text, closedAfterMs: Date.now() - started }));
    socket.on('connect', () => {
      for (const chunk of chunks) socket.write(chunk);
      // A complete request is answered; half-close afterwards so a keep-alive socket ends too.
      if (endAfterMs > 0) setTimeout(() => socket.end(), endAfterMs);
    });
  });
}

describe('the HTTP server (src/http-server.ts)', () => {
  it.each([
    ['a Host header that is not a host', 'GET /graphql HTTP/1.1\r\nHost: a b\r\n\r\n', '/graphql'],
    ['a port that is not a number', 'GET /health HTTP/1.1\r\nHost: x:abc\r\n\r\n', '/health'],
    // With a port in Host, as clients send it: `http://localhost:4000http://…` is not a URL.
    ['an absolute-form target', 'GET http://evil.example/graphql HTTP/1.1\r\nHost: localhost:4000\r\n\r\n', null],
    ['the asterisk target', 'OPTIONS * HTTP/1.1\r\nHost: localhost:4000\r\n\r\n', null],
    // No Host (HTTP/1.0): the fetch layer takes the socket's address and port instead.
    ['the asterisk target without a Host', 'OPTIONS * HTTP/1.0\r\n\r\n', null],
    ['an absolute-form target without a Host', 'GET http://evil.example/ HTTP/1.0\r\n\r\n', null],
  ])('answers %s with a coded 400 and a log line, not a 500 with a stack trace', async (_name, request, path) => {
    const { port, lines, upstream } = await serve();
    const { text } = await raw(port, [request]);
    const [head, body] = text.split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 400 /);
    expect(head).toMatch(/^x-request-id: \S+/im);
    expect(JSON.parse(body!)).toEqual({
      errors: [{ message: expect.stringContaining('do not form a URL'), extensions: { code: 'BAD_REQUEST', retryable: false } }],
    });
    expect(text).not.toMatch(/node_modules|\bat \w|TypeError/);
    // To /graphql: its GraphQL line (below). To another route: that route's debug line. Not known where: info.
    const refused = { msg: 'request', status: 400, path, detail: expect.stringContaining('do not form a URL') };
    expect(lines()).toEqual([
      path === '/health'
        ? expect.objectContaining({ ...refused, level: 'debug' })
        : expect.objectContaining({ ...refused, level: 'info', outcome: 'error', errorCodes: ['BAD_REQUEST'] }),
    ]);
    expect(upstream.calls()).toBe(0);
  });

  it('logs and counts a request to /graphql refused for its Host like any GraphQL request refused before it ran', async () => {
    const key = 'http-server-test-key-0123';
    const { port, lines, gateway } = await serve({}, { GATEWAY_API_KEYS: key });
    const before = await scrapeMetrics(gateway.app);
    // The observer's own line for a request refused before it ran, to compare fields with.
    const unauthenticated = await raw(port, ['GET /graphql HTTP/1.1\r\nHost: localhost\r\nx-graphql-csrf: 1\r\nConnection: close\r\n\r\n']);
    expect(unauthenticated.text).toMatch(/^HTTP\/1\.1 401 /);
    // The query string is not logged, nor read for an operation name: nothing of the request was.
    const refused = await raw(port, [`GET /graphql?query=query%20Named%7B__typename%7D HTTP/1.1\r\nHost: a b\r\nAuthorization: Bearer ${key}\r\n\r\n`]);
    expect(refused.text).toMatch(/^HTTP\/1\.1 400 /);
    const requestId = /^x-request-id: (\S+)/im.exec(refused.text)?.[1];

    const [observed, line] = lines();
    expect(line).toEqual(
      refusedGraphqlLine({ requestId, method: 'GET', status: 400, code: 'BAD_REQUEST', detail: expect.stringContaining('do not form a URL') }),
    );
    expect(Object.keys(line!)).toEqual([...Object.keys(observed!), 'detail']);
    expect(observed).toMatchObject({ status: 401, client: 'ip:127.0.0.1', errorCodes: ['UNAUTHENTICATED'] });

    const after = await scrapeMetrics(gateway.app);
    const increase = (name: string, labels: Record<string, string>) => (sample(after, name, labels) ?? 0) - (sample(before, name, labels) ?? 0);
    expect(increase('xingtu_graphql_errors_total', { code: 'BAD_REQUEST' })).toBe(1);
    expect(increase('xingtu_graphql_operations_total', { operation: '(anonymous)', outcome: 'error' })).toBe(2);
    expect(increase('xingtu_graphql_operation_duration_seconds_count', { operation: '(anonymous)', outcome: 'error' })).toBe(2);
  });

  it.each([
    ['garbage', 'GARBAGE\r\n\r\n', 400, /^HPE_/],
    ['a header line without a colon', 'GET /graphql HTTP/1.1\r\nHost: localhost\r\nNoColonHere\r\n\r\n', 400, /^HPE_/],
    ['headers over the size limit', `GET /graphql HTTP/1.1\r\nHost: localhost\r\nx-filler: ${'a'.repeat(20_000)}\r\n\r\n`, 431, /^HPE_HEADER_OVERFLOW$/],
  ])('answers %s Node cannot read with a coded body, an x-request-id and a log line', async (_name, request, status, nodeCode) => {
    const { port, lines, gateway, upstream } = await serve();
    const { text } = await raw(port, [request], { endAfterMs: 0 });
    const [head, body] = text.split('\r\n\r\n');
    expect(head).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
    expect(head).toMatch(/^connection: close$/im);
    expect(head).toMatch(/^content-type: application\/json; charset=utf-8$/im);
    const requestId = /^x-request-id: (\S+)$/im.exec(head!)?.[1];
    expect(requestId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(Number(/^content-length: (\d+)$/im.exec(head!)?.[1])).toBe(Buffer.byteLength(body!));
    expect(JSON.parse(body!)).toEqual({ errors: [{ message: expect.any(String), extensions: { code: 'BAD_REQUEST', retryable: false } }] });

    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(lines()).toEqual([unreadableLine(requestId, status, expect.any(String))]);
    expect(/\((\w+)\)$/.exec(lines()[0]!['detail'] as string)?.[1]).toMatch(nodeCode);
    expect(gateway.rawLogs.join('\n')).not.toMatch(/GARBAGE|NoColonHere|aaaaaaaa/);
    // Not known to be for /graphql: not counted as a GraphQL operation.
    const metrics = await scrapeMetrics(gateway.app);
    expect(sample(metrics, 'xingtu_graphql_errors_total', { code: 'BAD_REQUEST' })).toBe(0);
    expect(metrics).not.toMatch(/^xingtu_graphql_operations_total\{/m);
    expect(upstream.calls()).toBe(0);
  });

  it('answers what Node refused itself, HTTP/1.1 without a Host and an Expect it cannot meet, with a code, an id and a line', async () => {
    const { port, lines, gateway } = await serve();
    const noHost = await raw(port, ['POST /graphql HTTP/1.1\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}']);
    const expectation = await raw(port, ['POST /graphql HTTP/1.1\r\nHost: localhost\r\nExpect: the-moon\r\ncontent-length: 2\r\nConnection: close\r\n\r\n{}']);
    const ids: Array<string | undefined> = [];
    for (const [{ text }, status, message] of [
      [noHost, 400, 'An HTTP/1.1 request needs a Host header.'],
      [expectation, 417, 'The gateway cannot meet the request’s Expect header.'],
    ] as const) {
      const [head, body] = text.split('\r\n\r\n');
      expect(head).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
      expect(JSON.parse(body!)).toEqual({ errors: [{ message, extensions: { code: 'BAD_REQUEST', retryable: false } }] });
      ids.push(/^x-request-id: (\S+)$/im.exec(head!)?.[1]);
    }
    // As Node did, the connection of a request without a Host is closed after the answer.
    expect(noHost.text).toMatch(/^connection: close$/im);
    expect(lines()).toEqual([
      expect.objectContaining({ requestId: ids[0], path: '/graphql', status: 400, client: 'ip:127.0.0.1', errorCodes: ['BAD_REQUEST'], upstreamCalls: 0 }),
      expect.objectContaining({ requestId: ids[1], path: '/graphql', status: 417, client: 'ip:127.0.0.1', errorCodes: ['BAD_REQUEST'], upstreamCalls: 0 }),
    ]);
    expect(sample(await scrapeMetrics(gateway.app), 'xingtu_graphql_errors_total', { code: 'BAD_REQUEST' })).toBe(2);
  });

  it('answers CONNECT (Node closed the connection without a word) 405 with a code, an id and one line, counted nowhere', async () => {
    const { port, lines, gateway, upstream } = await serve();
    const { text, closedAfterMs } = await raw(port, ['CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n'], { endAfterMs: 0 });
    const [head, body] = text.split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 405 /);
    expect(head).toMatch(/^allow: GET, HEAD, POST$/im);
    expect(JSON.parse(body!)).toEqual({
      errors: [{ message: 'The gateway is not a proxy: CONNECT is not answered here.', extensions: { code: 'BAD_REQUEST', retryable: false } }],
    });
    // The gateway closed it, not the client (which never ends its side here).
    expect(closedAfterMs).toBeLessThan(2_000);
    const requestId = /^x-request-id: (\S+)$/im.exec(head!)?.[1];
    await expect.poll(lines).toHaveLength(1);
    // Its target is an authority, not a path: where it was going is not known, so no GraphQL fields and no metrics.
    expect(lines()).toEqual([
      {
        ...unreadableLine(requestId, 405, 'CONNECT request: the gateway is not a proxy'),
        method: 'CONNECT',
        durationMs: expect.any(Number),
      },
    ]);
    expect(sample(await scrapeMetrics(gateway.app), 'xingtu_graphql_errors_total', { code: 'BAD_REQUEST' })).toBe(0);
    expect(upstream.calls()).toBe(0);
  });

  it('still serves a well-formed request (and one with no Host header)', async () => {
    const { port } = await serve();
    const body = JSON.stringify({ query: '{ creator(kolId: "5") { linkStructure { summary { value } } } }' });
    const post = `POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
    expect((await raw(port, [post])).text).toMatch(/^HTTP\/1\.1 200 [\s\S]*"summary":\{"value":9875885\}/);
    // HTTP/1.0 needs no Host: the fetch layer takes the socket's address.
    expect((await raw(port, ['GET /health HTTP/1.0\r\n\r\n'])).text).toMatch(/^HTTP\/1\.1 200 /);
    // An empty Host counts as none.
    expect((await raw(port, ['GET /health HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n'])).text).toMatch(/^HTTP\/1\.1 200 /);
  });

  it('cuts off a client that stalls in its headers or its body (Node waits 60 s and 300 s), with a coded 408 and one line', async () => {
    const { port, lines } = await serve({ headersTimeoutMs: 300, requestTimeoutMs: 600 });
    const coded408 = (text: string) => {
      const [head, body] = text.split('\r\n\r\n');
      expect(head).toMatch(/^HTTP\/1\.1 408 /);
      expect(head).toMatch(/^connection: close$/im);
      expect(JSON.parse(body!)).toEqual({
        errors: [{ message: 'The request did not arrive in time.', extensions: { code: 'BAD_REQUEST', retryable: false } }],
      });
      return /^x-request-id: (\S+)$/im.exec(head!)?.[1];
    };
    const stalledHeaders = await raw(port, ['POST /graphql HTTP/1.1\r\nHost: localhost\r\n'], { endAfterMs: 0 });
    const headersId = coded408(stalledHeaders.text);
    expect(stalledHeaders.closedAfterMs).toBeLessThan(3_000);
    const stalledBody = await raw(
      port,
      ['POST /graphql HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\nx-request-id: stalled-body\r\n\r\n{"query":'],
      { endAfterMs: 0 },
    );
    // The app's request: its line is the app's, with the same id.
    expect(coded408(stalledBody.text)).toBe('stalled-body');
    expect(stalledBody.closedAfterMs).toBeLessThan(3_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(lines()).toEqual([
      // Headers that never ended: nothing read, not known to be GraphQL.
      expect.objectContaining({ requestId: headersId, method: null, path: null, status: 408, outcome: 'error', errorCodes: ['BAD_REQUEST'] }),
      // A body that never ended: the client was cut off (no error reached it), named by the address it came from.
      expect.objectContaining({
        requestId: 'stalled-body',
        path: '/graphql',
        status: 408,
        clientGone: true,
        outcome: 'cancelled',
        errorCodes: [],
        client: 'ip:127.0.0.1',
      }),
    ]);
    expect(lines()[0]!['detail']).toContain('ERR_HTTP_REQUEST_TIMEOUT');
  });

  it('a body still trickling in after an early answer is cut off with a coded 408 under that answer’s id, and logged once', async () => {
    const { port, lines } = await serve({ headersTimeoutMs: 300, requestTimeoutMs: 600 }, { GATEWAY_API_KEYS: 'http-server-test-key-0123' });
    const { text } = await raw(
      port,
      ['POST /graphql HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"query":'],
      { endAfterMs: 0 },
    );
    const [early, late] = text.split(/(?=HTTP\/1\.1 )/);
    expect(early).toMatch(/^HTTP\/1\.1 401 /);
    expect(late).toMatch(/^HTTP\/1\.1 408 /);
    const earlyId = /^x-request-id: (\S+)$/im.exec(early!)?.[1];
    expect(earlyId).toBeDefined();
    expect(/^x-request-id: (\S+)$/im.exec(late!)?.[1]).toBe(earlyId);
    expect(JSON.parse(late!.split('\r\n\r\n')[1]!)).toMatchObject({ errors: [{ extensions: { code: 'BAD_REQUEST' } }] });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(lines()).toEqual([expect.objectContaining({ requestId: earlyId, status: 401, errorCodes: ['UNAUTHENTICATED'] })]);
  });

  /** A complete query with the given `x-request-id`, whose answer waits on the upstream. */
  const postQuery = (requestId: string) => {
    const body = JSON.stringify({ query: '{ creator(kolId: "5") { linkStructure { summary { value } } } }' });
    return (
      `POST /graphql HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\nx-request-id: ${requestId}\r\n` +
      `content-length: ${body.length}\r\n\r\n${body}`
    );
  };

  it('answers bytes Node cannot read after a complete request still being answered under a new id, with their own line', async () => {
    const { port, lines } = await serve({}, {}, () => reply.ok(undefined, 300));
    // One write: Node hands the query over, then fails on what follows it while the query's answer is pending.
    const { text } = await raw(port, [postQuery('first') + 'GARBAGE\r\n\r\n'], { endAfterMs: 0 });
    const [head] = text.split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 400 /);
    const requestId = /^x-request-id: (\S+)$/im.exec(head!)?.[1];
    expect(requestId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    await new Promise((resolve) => setTimeout(resolve, 50));
    // The query's own line (written once its upstream call ends) is not this answer's.
    expect(lines().filter((line) => line['requestId'] !== 'first')).toEqual([unreadableLine(requestId, 400, expect.stringMatching(/\(HPE_\w+\)$/))]);
  });

  it('a request pipelined behind one still being answered, cut off in its body, gets its 408 under its own id', async () => {
    const { port, lines } = await serve({ headersTimeoutMs: 200, requestTimeoutMs: 300 }, {}, () => reply.ok(undefined, 900));
    const stalled =
      'POST /graphql HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\nx-request-id: second\r\n' +
      'content-length: 100\r\n\r\n{"query":';
    const { text } = await raw(port, [postQuery('first') + stalled], { endAfterMs: 0 });
    const [head] = text.split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 408 /);
    expect(/^x-request-id: (\S+)$/im.exec(head!)?.[1]).toBe('second');
    // Handed to the app, which writes its line: the 408 gets none of its own. It says what the client got (it said 400,
    // the app's answer to a body that never came, which no one received).
    await expect.poll(() => lines().find((line) => line['requestId'] === 'second')).toMatchObject({
      path: '/graphql',
      status: 408,
      outcome: 'cancelled',
      clientGone: true,
      errorCodes: [],
    });
    expect(lines().filter((line) => line['path'] === null)).toEqual([]);
    // The query before it had arrived whole: the connection was cut under it (its client got nothing), but the 408 was
    // not its answer. Its line, once its upstream call ends, says so.
    await expect.poll(() => lines().find((line) => line['requestId'] === 'first'), { timeout: 3_000 }).toMatchObject({
      status: 200,
      outcome: 'cancelled',
      clientGone: true,
    });
  });

  it.each([
    // Node's limit on a chunk extension is 16 KiB; it answers 413, as the HTTP server does.
    ['a chunk extension over Node’s limit', `5;${'a='.padEnd(20_000, 'b')}\r\n{"que\r\n`, 413, 'HPE_CHUNK_EXTENSIONS_OVERFLOW'],
    ['a chunk size that is not hexadecimal', 'zz\r\n{"que\r\n', 400, 'HPE_INVALID_CHUNK_SIZE'],
  ])('a body Node cannot read (%s) is answered by the HTTP server, and the app’s line says what the client got', async (_name, chunks, status, nodeCode) => {
    const { port, lines, gateway, upstream } = await serve();
    const before = await scrapeMetrics(gateway.app);
    const head =
      'POST /graphql HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n' +
      'x-request-id: unreadable-body\r\n\r\n';
    const { text } = await raw(port, [head, chunks], { endAfterMs: 0 });
    const [answerHead, body] = text.split('\r\n\r\n');
    expect(answerHead).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
    expect(/^x-request-id: (\S+)$/im.exec(answerHead!)?.[1]).toBe('unreadable-body');
    expect(JSON.parse(body!)).toMatchObject({ errors: [{ extensions: { code: 'BAD_REQUEST', retryable: false } }] });
    // Handed to the app, which writes the line: the client did not go, it was refused (it said status 400, cancelled,
    // clientGone and no error code, whatever the HTTP server had answered).
    await expect.poll(() => lines().find((line) => line['requestId'] === 'unreadable-body')).toMatchObject({
      path: '/graphql',
      status,
      outcome: 'error',
      errorCodes: ['BAD_REQUEST'],
      detail: expect.stringContaining(`(${nodeCode})`),
    });
    expect(lines()).toHaveLength(1);
    expect(lines()[0]).not.toHaveProperty('clientGone');
    const after = await scrapeMetrics(gateway.app);
    const increase = (name: string, labels: Record<string, string>) => (sample(after, name, labels) ?? 0) - (sample(before, name, labels) ?? 0);
    expect(increase('xingtu_graphql_errors_total', { code: 'BAD_REQUEST' })).toBe(1);
    expect(increase('xingtu_graphql_operations_total', { operation: '(anonymous)', outcome: 'error' })).toBe(1);
    expect(upstream.calls()).toBe(0);
  });
});

describe('upstream calls nobody waits for any more', () => {
  /** A query over its own connection, which `leave()` closes before the answer (the client gave up). */
  function ask(port: number, kolId: string) {
    const body = JSON.stringify({ query: `{ creator(kolId: "${kolId}") { linkStructure { summary { value } } } }` });
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
    socket.write(`POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
    const answered = new Promise<string>((resolve) => {
      const check = () => (/\r\n\r\n\{.*\}$/s.test(text) ? resolve(text) : undefined);
      socket.on('data', check);
    });
    return { answered, leave: () => socket.destroy() };
  }

  it('a call queued for a slot is not sent once every client that asked has gone; one a client still waits for is', async () => {
    const { port, upstream, gateway } = await serve({}, { UPSTREAM_CONCURRENCY: '1' }, () => reply.ok(undefined, 400));
    const first = ask(port, '1'); // holds the only slot for 400 ms
    await new Promise((resolve) => setTimeout(resolve, 100));
    const gone = ask(port, '2'); // queued behind it, then its client gives up
    const leaving = ask(port, '3'); // queued too: one client gives up, another asking for the same creator stays
    const staying = ask(port, '3');
    await new Promise((resolve) => setTimeout(resolve, 100));
    gone.leave();
    leaving.leave();
    expect(await first.answered).toContain('"value":9875885');
    expect(await staying.answered).toContain('"value":9875885');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(upstream.calls('1')).toBe(1);
    expect(upstream.calls('2')).toBe(0);
    expect(upstream.calls('3')).toBe(1);
    const metrics = await (await gateway.app.fetch('http://gateway.test/metrics')).text();
    expect(metrics).toMatch(/^xingtu_upstream_calls_abandoned_total 1$/m);
    // Given up for clients that had gone: not an upstream outage, in the log line or the error counter.
    expect(metrics).not.toMatch(/^xingtu_graphql_errors_total\{.*\} [1-9]/m);
    const goneLines = gateway.logs.filter((line) => line['msg'] === 'request' && line['clientGone'] === true);
    expect(goneLines).toHaveLength(2);
    // Not failures of the gateway's: an error-rate SLO must not count them.
    expect(metrics).toMatch(/^xingtu_graphql_operations_total\{operation="\(anonymous\)",outcome="cancelled"\} 2$/m);
    for (const line of goneLines) {
      expect(line).toMatchObject({ errorCodes: [], client: 'ip:127.0.0.1', outcome: 'cancelled' });
      // Their requests had arrived whole: a client that hung up is not one Node cut off with a 408.
      expect(line['status']).not.toBe(408);
    }
  });

  it('a retry given up unsent, its client gone during the backoff, is not counted as a retry', async () => {
    const { port, upstream, gateway } = await serve({}, { UPSTREAM_RETRY_BASE_MS: '1000' }, () => reply.business(500));
    const asked = ask(port, '8');
    while (upstream.calls('8') < 1) await new Promise((resolve) => setTimeout(resolve, 10));
    await new Promise((resolve) => setTimeout(resolve, 100));
    asked.leave();
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    expect(upstream.calls('8')).toBe(1);
    const metrics = await (await gateway.app.fetch('http://gateway.test/metrics')).text();
    expect(metrics).toMatch(/^xingtu_upstream_calls_abandoned_total 1$/m);
    expect(metrics).not.toMatch(/^xingtu_upstream_retries_total\{reason="UPSTREAM_INTERNAL_ERROR"\} [1-9]/m);
  });

  const creator = (kolId: string) => ({ kolId, acceptCache: false, platform: 'SHORT_VIDEO' as const });
  const abandoned = (gateway: { metrics?: { registry: { metrics(): Promise<string> } } | undefined }) =>
    gateway.metrics!.registry.metrics().then((text) => Number(/^xingtu_upstream_calls_abandoned_total (\d+)$/m.exec(text)?.[1]));

  /** A gateway with one upstream slot (answers take 300 ms), and a call for creator 1 holding it. */
  async function oneSlotTaken() {
    const upstream = await startFakeUpstream(() => reply.ok(undefined, 300));
    const gateway = createTestGateway(upstream.url, { UPSTREAM_CONCURRENCY: '1' });
    onTestFinished(async () => {
      await gateway.close();
      await upstream.close();
    });
    return { upstream, gateway, holding: gateway.cache.load(creator('1')) };
  }

  it('a request the cost check counted on joining a call makes its own when that call is given up', async () => {
    const { upstream, gateway, holding } = await oneSlotTaken();
    const leaving = new AbortController();
    const first = gateway.cache.load(creator('2'), undefined, undefined, leaving.signal);
    const planned = new Map();
    expect(gateway.cache.upstreamCallsFor([creator('2')], planned)).toBe(0); // counted as a join
    leaving.abort();
    await expect(first).rejects.toThrow('not sent');
    const staying = new AbortController();
    const outcomes: string[] = [];
    const value = await gateway.cache.load(creator('2'), (outcome) => outcomes.push(outcome), planned, staying.signal);
    expect(value.kolId).toBe('2');
    await holding;
    expect(upstream.calls('2')).toBe(1);
    // One lookup, one outcome: the join it counted on came to nothing, so only the call it made counts (in its log line,
    // and in the metrics: three misses, 1's, the given-up call's and this one's; no join).
    expect(outcomes).toEqual(['miss', 'attempt', 'upstream']);
    const metrics = await scrapeMetrics(gateway.app);
    expect(sample(metrics, 'xingtu_cache_singleflight_joins_total')).toBe(0);
    expect(sample(metrics, 'xingtu_cache_misses_total')).toBe(3);
  });

  it('an acceptCache request counted on joining the fresh call keeps it wanted when the request that started it leaves', async () => {
    const { upstream, gateway, holding } = await oneSlotTaken();
    const leaving = new AbortController();
    const first = gateway.cache.load(creator('9'), undefined, undefined, leaving.signal); // queued for the slot
    // Another request asks with acceptCache: the fresh call does for it, so the cost check counts it free, a join.
    const cached = { ...creator('9'), acceptCache: true };
    const planned = new Map();
    expect(gateway.cache.upstreamCallsFor([cached], planned)).toBe(0);
    const staying = new AbortController();
    const outcomes: string[] = [];
    const second = gateway.cache.load(cached, (outcome) => outcomes.push(outcome), planned, staying.signal);
    // The request that started the call leaves; the one that joined it still waits, so the call is still wanted.
    leaving.abort();
    first.catch(() => undefined);
    expect((await second).kolId).toBe('9');
    await holding;
    expect(upstream.requests.filter((request) => request.kolId === '9').map((request) => request.params['acceptCache'])).toEqual(['false']);
    expect(outcomes).toEqual(['join']);
    expect(await abandoned(gateway)).toBe(0);
  });

  it('gives up a call whose only asker had gone before it asked, and one that sat out a 302 pause for nobody', async () => {
    const upstream = await startFakeUpstream((request) => (request.kolId === '4' ? reply.business(302) : reply.ok(undefined, 300)));
    const gateway = createTestGateway(upstream.url, { UPSTREAM_CONCURRENCY: '2', UPSTREAM_RETRIES: '0', UPSTREAM_RETRY_BASE_MS: '400' });
    onTestFinished(async () => {
      await gateway.close();
      await upstream.close();
    });
    const holding = [gateway.cache.load(creator('1')), gateway.cache.load(creator('2'))]; // both slots
    await expect(gateway.cache.load(creator('3'), undefined, undefined, AbortSignal.abort())).rejects.toThrow('not sent');
    await Promise.all(holding);
    // A 302 pauses every call for 400 ms; one that gets its slot meanwhile and loses its asker is not sent after it.
    await expect(gateway.cache.load(creator('4'))).rejects.toThrow();
    const leaving = new AbortController();
    const paused = gateway.cache.load(creator('5'), undefined, undefined, leaving.signal);
    setTimeout(() => leaving.abort(), 50);
    await expect(paused).rejects.toThrow('not sent');
    expect(upstream.calls('3')).toBe(0);
    expect(upstream.calls('5')).toBe(0);
    expect(await abandoned(gateway)).toBe(2);
  });
});

describe('draining', () => {
  it('closes the connection of a streamed answer too, whose Connection: keep-alive Yoga sets itself', async () => {
    const { port, drain } = await serve();
    const body = JSON.stringify({ query: '{ creator(kolId: "1") { kolId } }' });
    const request = (accept: string) =>
      `POST /graphql HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/json\r\nAccept: ${accept}\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    // Before the drain the stream keeps its connection, as Yoga asks.
    const before = await raw(port, [request('text/event-stream')], { endAfterMs: 300 });
    expect(before.text).toMatch(/^HTTP\/1\.1 200 /);
    expect(before.text.toLowerCase()).toContain('connection: keep-alive');
    drain();
    for (const accept of ['text/event-stream', 'application/json']) {
      const { text } = await raw(port, [request(accept)], { endAfterMs: 5_000 });
      expect(text).toMatch(/^HTTP\/1\.1 200 /);
      expect(text.toLowerCase()).toContain('connection: close');
      expect(text.toLowerCase()).not.toContain('keep-alive');
    }
  });
});

describe('pipelined requests while draining', () => {
  it('answers one queued behind another 503 SHUTTING_DOWN without running it, logged and counted as a refused GraphQL request', async () => {
    const key = 'http-server-test-key-0123';
    const { port, drain, upstream, lines, gateway } = await serve({}, { GATEWAY_API_KEYS: key });
    drain();
    const post = (kolId: string) => {
      const body = JSON.stringify({ query: `{ creator(kolId: "${kolId}") { linkStructure { fetchedAt } } }` });
      return (
        `POST /graphql?via=pipeline HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: Bearer ${key}\r\nx-request-id: ask-${kolId}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`
      );
    };
    // Both in one write: the second is queued behind the first before the first is answered.
    const { text } = await raw(port, [post('501') + post('502')], { endAfterMs: 5_000 });
    const answers = text.split(/(?=HTTP\/1\.1 )/);
    expect(answers[0]).toMatch(/^HTTP\/1\.1 200 /);
    expect(answers[0]!.toLowerCase()).toContain('connection: close');
    expect(upstream.calls('501')).toBe(1);
    // Never run, never paid for; told so if the connection had stayed open for it.
    expect(upstream.calls('502')).toBe(0);
    // The refused one's line first: it was answered (queued) before the one ahead of it.
    const [refused, ran] = lines();
    expect(ran).toMatchObject({ requestId: 'ask-501', status: 200 });
    expect(refused).toEqual(
      refusedGraphqlLine({
        requestId: 'ask-502',
        method: 'POST',
        status: 503,
        code: 'SHUTTING_DOWN',
        detail: 'pipelined request refused while the gateway shuts down',
      }),
    );
    const metrics = await scrapeMetrics(gateway.app);
    expect(sample(metrics, 'xingtu_graphql_errors_total', { code: 'SHUTTING_DOWN' })).toBe(1);
    expect(sample(metrics, 'xingtu_graphql_operations_total', { operation: '(anonymous)', outcome: 'error' })).toBe(1);
    expect(sample(metrics, 'xingtu_graphql_operation_duration_seconds_count', { operation: '(anonymous)', outcome: 'error' })).toBe(1);
    expect(sample(metrics, 'xingtu_graphql_operations_total', { operation: '(anonymous)', outcome: 'success' })).toBe(1);
  });
});
