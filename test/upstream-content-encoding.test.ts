import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { maxAnswerBytes } from '../src/upstream/link-struct-client.js';
import { createTestGateway, testToken, type TestGateway } from './gateway.js';
import { documentedPayload, startFakeUpstream, type FakeReply, type FakeUpstream } from './fake-upstream.js';

// An answer with a content coding the gateway did not ask for: the request says `accept-encoding: identity`, but without
// that header any coding would be acceptable (RFC 9110 §12.5.3), and a proxy in front of the API may compress anyway.

const query = /* GraphQL */ `
  query ($kolId: ID!) {
    creator(kolId: $kolId) { kolId linkStructure { summary { value } } }
  }
`;

const answerText = JSON.stringify({ code: 0, message: 'success', data: documentedPayload });

function encoded(coding: string, bytes: Uint8Array): FakeReply {
  return { kind: 'bytes', bytes, headers: { 'content-encoding': coding } };
}

describe.each(['v1', 'gw'] as const)('upstream requests ask for no content coding (%s endpoint)', (endpoint) => {
  it('send accept-encoding: identity, and read an answer marked `Identity` as it came', async () => {
    const upstream = await startFakeUpstream(() => encoded('Identity', Buffer.from(answerText)));
    const gateway = createTestGateway(upstream.url, { JUSTONEAPI_LINK_ENDPOINT: endpoint });
    try {
      const { body } = await gateway.query(query, { kolId: '61' });
      expect(body.errors).toBeUndefined();
      expect(body.data.creator.linkStructure.summary.value).toBe(9875885);
      expect(upstream.requests).toHaveLength(1);
      expect(upstream.requests[0]!.endpoint).toBe(endpoint);
      expect(upstream.requests[0]!.headers['accept-encoding']).toBe('identity');
      expect(upstream.requests[0]!.headers['accept']).toBe('application/json');
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });
});

describe('an upstream answer with a content coding', () => {
  let upstream: FakeUpstream;
  let gateway: TestGateway;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    // Retries on: a failure below that were retried would show as 3 calls. Breaker off, so no row depends on another.
    gateway = createTestGateway(upstream.url, { UPSTREAM_RETRIES: '2', UPSTREAM_RETRY_BASE_MS: '1', BREAKER_COOLDOWN_SECONDS: '0' });
  });
  afterAll(async () => {
    await gateway.close();
    await upstream.close();
  });
  beforeEach(() => {
    upstream.reset();
    gateway.cache.clear();
  });

  const served: Array<{ name: string; answer: () => FakeReply }> = [
    { name: 'gzip', answer: () => encoded('gzip', gzipSync(answerText)) },
    { name: 'x-gzip', answer: () => encoded('x-gzip', gzipSync(answerText)) },
    { name: 'deflate (zlib-wrapped, as HTTP defines it)', answer: () => encoded('deflate', deflateSync(answerText)) },
    { name: 'deflate sent raw, as some servers do', answer: () => encoded('deflate', deflateRawSync(answerText)) },
    { name: 'br', answer: () => encoded('br', brotliCompressSync(answerText)) },
    { name: 'GZip (codings are case-insensitive)', answer: () => encoded('GZip', gzipSync(answerText)) },
    { name: 'identity, gzip (identity is no coding)', answer: () => encoded('identity, gzip', gzipSync(answerText)) },
    {
      // The cap is on the decoded answer, at the size a raw answer may have: one just under it is read whole.
      name: 'gzip, decoding to just under 1 MiB',
      answer: () => encoded('gzip', gzipSync(`${answerText}${' '.repeat(maxAnswerBytes - answerText.length - 16)}`)),
    },
  ];

  it.each(served)('$name: decoded and served, in one upstream call', async ({ answer }) => {
    upstream.setBehaviour(answer);
    const { body } = await gateway.query(query, { kolId: '62' });
    expect(body.errors).toBeUndefined();
    expect(body.data.creator).toEqual({ kolId: '62', linkStructure: { summary: { value: 9875885 } } });
    expect(upstream.calls('62')).toBe(1);
  });

  const refused: Array<{ name: string; coding: string; answer: () => FakeReply }> = [
    { name: 'an unknown coding', coding: 'compress', answer: () => encoded('compress', gzipSync(answerText)) },
    { name: 'zstd (not decoded)', coding: 'zstd', answer: () => encoded('zstd', gzipSync(answerText)) },
    { name: 'two codings, one over the other', coding: 'gzip, br', answer: () => encoded('gzip, br', brotliCompressSync(gzipSync(answerText))) },
    { name: 'a gzip body that is not gzip', coding: 'gzip', answer: () => encoded('gzip', Buffer.from(answerText)) },
    { name: 'a gzip body cut short', coding: 'gzip', answer: () => encoded('gzip', gzipSync(answerText).subarray(0, 40)) },
    { name: 'a corrupt gzip body', coding: 'gzip', answer: () => encoded('gzip', corrupted(gzipSync(answerText))) },
    { name: 'a br body that is not br', coding: 'br', answer: () => encoded('br', Buffer.from(answerText)) },
  ];

  it.each(refused)('$name: UPSTREAM_BAD_RESPONSE, not retried (the answer was likely paid for)', async ({ coding, answer }) => {
    upstream.setBehaviour(answer);
    const { status, body } = await gateway.query(query, { kolId: '63' });
    expect(status).toBe(200);
    expect(body.data).toEqual({ creator: { kolId: '63', linkStructure: null } });
    expect(body.errors).toHaveLength(1);
    expect(body.errors![0]!.extensions).toEqual({ code: 'UPSTREAM_BAD_RESPONSE', retryable: false, kolId: '63' });
    expect(upstream.calls('63')).toBe(1);
    const failed = gateway.logs.filter((line) => line.msg === 'upstream call failed').at(-1)!;
    expect(failed).toMatchObject({ kolId: '63', code: 'UPSTREAM_BAD_RESPONSE', willRetry: false });
    // The log names the coding; neither it nor the client's answer quotes the URL, which holds the token.
    expect(failed['detail']).toContain(`content-encoding ${JSON.stringify(coding)}`);
    expect(failed['detail']).not.toContain('/api/');
    expect(gateway.rawLogs.join('\n')).not.toContain(testToken);
  });

  it('a gzip answer decoding past 1 MiB fails as an oversize answer does, without the decoded answer ever held whole', async () => {
    // Gzip members one after another are one gzip body. A complete, valid answer, then 7 members of 64 MiB of spaces (64 KB
    // each on the wire): under 0.5 MB sent, 448 MiB decoded, which read whole would have parsed and been served.
    const padding = gzipSync(Buffer.alloc(64 * 1024 * 1024, 0x20));
    const bomb = Buffer.concat([gzipSync(answerText), ...Array.from({ length: 7 }, () => padding)]);
    expect(bomb.length).toBeLessThan(maxAnswerBytes);
    upstream.setBehaviour(() => encoded('gzip', bomb));

    const rssBefore = process.memoryUsage.rss();
    const { body } = await gateway.query(query, { kolId: '64' });
    const rssGrowth = process.memoryUsage.rss() - rssBefore;

    expect(body.data).toEqual({ creator: { kolId: '64', linkStructure: null } });
    expect(body.errors![0]!.extensions).toEqual({ code: 'UPSTREAM_BAD_RESPONSE', retryable: false, kolId: '64' });
    expect(upstream.calls('64')).toBe(1);
    const failed = gateway.logs.filter((line) => line.msg === 'upstream call failed').at(-1)!;
    expect(failed['detail']).toBe(`answer in content-encoding "gzip" decodes to more than ${maxAnswerBytes} bytes: cut off`);
    // Decoding stopped at the cap: holding the decoded answer would have taken 448 MiB, more as text.
    expect(rssGrowth).toBeLessThan(64 * 1024 * 1024);
  });
});

/** A gzip body with bytes in the middle of its compressed data changed: its header is fine, its data or checksum is not. */
function corrupted(gzip: Buffer): Buffer {
  const copy = Buffer.from(gzip);
  for (let i = 12; i < copy.length - 8; i += 3) copy[i] = copy[i]! ^ 0xff;
  return copy;
}
