import { describe, expect, it } from 'vitest';
import { createLinkStructureCache } from '../src/link-structure/link-structure-cache.js';
import type { LinkStructure, LinkStructureRequest } from '../src/link-structure/model.js';
import { createLogger } from '../src/logger.js';
import { createUpstreamClient } from '../src/upstream/link-struct-client.js';
import { UpstreamError } from '../src/upstream/upstream-error.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('link-structure cache, answeredRequest', () => {
  it('stale-if-error still finds an answer kept under its answered key when the load key differs (v1 replica, gw answer from Redis)', async () => {
    // A replica still on v1 (auto before its switch, or pinned v1): canonical keeps acceptCache. The shared tier hands it
    // a gw answer another, switched replica stored under the `cached` key too (shared-tier stores under both keys).
    const upstream = createUpstreamClient({
      baseUrl: 'http://127.0.0.1:9', token: 't', timeoutMs: 1_000, retries: 0, retryBaseMs: 1, concurrency: 1,
      endpoint: 'v1', logger: createLogger({ level: 'silent' }),
    });
    const gwAnswer = (): LinkStructure => ({
      kolId: '1', authorLinkType: 'x', buckets: [], summary: null, fetchedAt: new Date(), platform: 'SHORT_VIDEO', source: 'gw',
    });
    let calls = 0;
    const cache = createLinkStructureCache({
      ttlMs: 50,
      staleMs: 60_000,
      maxEntries: 100,
      canonical: upstream.canonicalRequest,
      answered: upstream.answeredRequest,
      fetch: async () => {
        calls += 1;
        if (calls === 1) return gwAnswer();
        throw new UpstreamError('UPSTREAM_UNAVAILABLE', 'HTTP 503');
      },
    });
    const request: LinkStructureRequest = { kolId: '1', acceptCache: true, platform: 'SHORT_VIDEO' };
    expect((await cache.load(request)).source).toBe('gw');
    await sleep(80);
    // The stale fallback looks under the key the load was asked by.
    const again = await cache.load(request);
    expect(again.stale).toBe(true);
    await upstream.close();
  });
});
