import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createSchema, createYoga } from 'graphql-yoga';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useRequestBodyLimit } from '../src/request-body-limit.js';

/** A small Yoga with the gateway's body limit set to 200 bytes, served over loopback like the real one. */
describe('request body limit', () => {
  const yoga = createYoga({
    schema: createSchema({ typeDefs: 'type Query { echo(text: String!): String! }', resolvers: { Query: { echo: (_: unknown, args: { text: string }) => args.text } } }),
    maxRequestBodySize: false,
    plugins: [useRequestBodyLimit(200)],
  });
  const server = createServer(yoga);
  let port = 0;

  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  /** POSTs the chunks on a connection of its own, with Content-Length when `declaredLength` is given, chunked otherwise. */
  function post(chunks: string[], declaredLength?: string) {
    return new Promise<{ status: number; body: any }>((resolve, reject) => {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (declaredLength !== undefined) headers['content-length'] = declaredLength;
      const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/graphql', headers, agent: false }, (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      });
      req.on('error', reject);
      for (const chunk of chunks) req.write(chunk);
      req.end();
    });
  }
  const query = (text: string) => JSON.stringify({ query: `{ echo(text: "${text}") }` });

  it('answers a body within the limit, with or without Content-Length', async () => {
    const body = query('hi');
    expect(await post([body], String(Buffer.byteLength(body)))).toEqual({ status: 200, body: { data: { echo: 'hi' } } });
    expect(await post([body.slice(0, 10), body.slice(10)])).toEqual({ status: 200, body: { data: { echo: 'hi' } } });
  });

  it('refuses a declared length over the limit with 413, before reading the body', async () => {
    const answer = await post(['{"query":'], '201');
    expect(answer.status).toBe(413);
    expect(answer.body.errors[0].extensions).toEqual({ code: 'REQUEST_ENTITY_TOO_LARGE' });
  });

  it('refuses a chunked body that grows past the limit with 413', async () => {
    const body = query('x'.repeat(300));
    const answer = await post([body.slice(0, 100), body.slice(100, 200), body.slice(200)]);
    expect(answer.status).toBe(413);
    expect(answer.body.errors[0].extensions).toEqual({ code: 'REQUEST_ENTITY_TOO_LARGE' });
  });
});
