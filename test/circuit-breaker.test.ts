import { describe, expect, it } from 'vitest';
import { createLinkStructureCache, type CacheOutcome, type CallInterest } from '../src/link-structure/link-structure-cache.js';
import type { LinkStructure } from '../src/link-structure/model.js';
import { CircuitBreaker, type BreakerState } from '../src/upstream/circuit-breaker.js';
import { RateLimitBackoff } from '../src/upstream/rate-limit-backoff.js';
import { CallAbandoned, upstreamCodeToError, UpstreamError } from '../src/upstream/upstream-error.js';

function clock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

function caught(action: () => unknown): UpstreamError | undefined {
  try {
    action();
  } catch (error) {
    if (error instanceof UpstreamError) return error;
    throw error;
  }
  return undefined;
}

describe('CircuitBreaker', () => {
  it.each([100, 300, 303, 600, 601])('opens on upstream code %i and fails fast with that code until the cool-down ends', (code) => {
    const time = clock();
    const states: BreakerState[] = [];
    const breaker = new CircuitBreaker({ cooldownMs: 10_000, now: time.now, onStateChange: (state) => states.push(state) });
    const admission = breaker.admit();
    breaker.failed(admission, upstreamCodeToError(code, 'no'));
    expect(breaker.state).toBe('open');
    expect(breaker.retryAfterSeconds).toBe(10);
    const fast = caught(() => breaker.admit());
    expect(fast).toMatchObject({ code: upstreamCodeToError(code, '').code, upstreamCode: code });
    expect(caught(() => breaker.check())?.upstreamCode).toBe(code);
    time.advance(9_999);
    expect(breaker.state).toBe('open');
    time.advance(1);
    expect(breaker.state).toBe('half-open');
    expect(states).toEqual(['open', 'half-open']);
  });

  it.each([
    ['301 collection failed', upstreamCodeToError(301, '')],
    ['302 rate limited', upstreamCodeToError(302, '')],
    ['400 bad input', upstreamCodeToError(400, '')],
    ['500 internal', upstreamCodeToError(500, '')],
    ['a timeout', new UpstreamError('UPSTREAM_TIMEOUT', 'slow')],
    ['a reset', new UpstreamError('UPSTREAM_UNAVAILABLE', 'reset')],
  ])('stays closed on %s (it says nothing about the account)', (_name, error) => {
    const breaker = new CircuitBreaker({ cooldownMs: 10_000 });
    breaker.failed(breaker.admit(), error);
    expect(breaker.state).toBe('closed');
  });

  it('half-open: lets exactly one probe through; its success closes the breaker', () => {
    const time = clock();
    const breaker = new CircuitBreaker({ cooldownMs: 1_000, now: time.now });
    breaker.failed(breaker.admit(), upstreamCodeToError(303, ''));
    time.advance(1_000);
    const probe = breaker.admit();
    expect(probe.probe).toBe(true);
    expect(caught(() => breaker.admit())?.code).toBe('UPSTREAM_QUOTA_EXCEEDED');
    breaker.succeeded(probe);
    expect(breaker.state).toBe('closed');
    expect(breaker.admit().probe).toBe(false);
  });

  it('half-open: a failed probe opens it again for a full cool-down, keeping the account error’s code', () => {
    const time = clock();
    const breaker = new CircuitBreaker({ cooldownMs: 1_000, now: time.now });
    breaker.failed(breaker.admit(), upstreamCodeToError(601, ''));
    time.advance(1_000);
    breaker.failed(breaker.admit(), new UpstreamError('UPSTREAM_TIMEOUT', 'slow'));
    expect(breaker.state).toBe('open');
    expect(caught(() => breaker.admit())).toMatchObject({ code: 'UPSTREAM_INSUFFICIENT_BALANCE', upstreamCode: 601 });
    time.advance(1_000);
    breaker.failed(breaker.admit(), upstreamCodeToError(100, ''));
    expect(caught(() => breaker.admit())).toMatchObject({ code: 'UPSTREAM_AUTH_FAILED', upstreamCode: 100 });
  });

  it('half-open: a probe answered code 0 that failed only for its creator closes the breaker (the account is served)', () => {
    const time = clock();
    const breaker = new CircuitBreaker({ cooldownMs: 1_000, now: time.now });
    breaker.failed(breaker.admit(), upstreamCodeToError(303, ''));
    time.advance(1_000);
    breaker.failed(breaker.admit(), new UpstreamError('UPSTREAM_ERROR', 'base_resp 4001', { upstreamCode: 4001, accountServed: true }));
    expect(breaker.state).toBe('closed');
    expect(breaker.admit().probe).toBe(false);
  });

  it('a late success of a call admitted before the breaker opened does not close it', () => {
    const breaker = new CircuitBreaker({ cooldownMs: 1_000 });
    const early = breaker.admit();
    breaker.failed(breaker.admit(), upstreamCodeToError(303, ''));
    breaker.succeeded(early);
    expect(breaker.state).toBe('open');
  });

  it('BREAKER_COOLDOWN_SECONDS=0 turns it off', () => {
    const breaker = new CircuitBreaker({ cooldownMs: 0 });
    breaker.failed(breaker.admit(), upstreamCodeToError(303, ''));
    expect(breaker.state).toBe('closed');
    expect(breaker.admit().probe).toBe(false);
  });
});

describe('RateLimitBackoff (process-wide pause after code 302)', () => {
  it('doubles the pause on each 302 in a row, up to the maximum, and halves the streak on success', () => {
    const time = clock();
    const backoff = new RateLimitBackoff({ baseMs: 100, maxMs: 500, now: time.now });
    expect(backoff.remainingMs).toBe(0);
    backoff.rateLimited();
    expect(backoff.remainingMs).toBe(100);
    time.advance(100);
    backoff.rateLimited();
    expect(backoff.remainingMs).toBe(200);
    time.advance(200);
    backoff.rateLimited();
    time.advance(1);
    backoff.rateLimited();
    expect(backoff.remainingMs).toBe(500);
    expect(backoff.streak).toBe(4);
    backoff.succeeded();
    expect(backoff.streak).toBe(2);
    backoff.succeeded();
    backoff.succeeded();
    expect(backoff.streak).toBe(0);
  });

  it('counts the 302s of attempts sent before the pause began as one: only a later attempt escalates', () => {
    const time = clock();
    const backoff = new RateLimitBackoff({ baseMs: 100, maxMs: 10_000, now: time.now });
    const sentTogether = backoff.now();
    time.advance(20);
    for (let index = 0; index < 8; index += 1) backoff.rateLimited(sentTogether);
    expect(backoff.streak).toBe(1);
    expect(backoff.remainingMs).toBe(100);
    // Sent in the very millisecond the pause grew: it could not have known either.
    backoff.rateLimited(backoff.now());
    expect(backoff.streak).toBe(1);
    time.advance(100);
    backoff.rateLimited(backoff.now());
    expect(backoff.streak).toBe(2);
    expect(backoff.remainingMs).toBe(200);
  });

  it('makes every waiter wait until the pause ends', async () => {
    const backoff = new RateLimitBackoff({ baseMs: 60, maxMs: 1_000 });
    backoff.rateLimited();
    const started = Date.now();
    await Promise.all([backoff.wait(), backoff.wait()]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(55);
    expect(backoff.remainingMs).toBe(0);
  });
});

describe('stale-if-error in the cache', () => {
  // Answered now: the cache counts an answer's freshness from when the upstream gave it.
  const structure = (kolId: string): LinkStructure => ({
    kolId,
    platform: 'SHORT_VIDEO',
    source: 'v1',
    authorLinkType: null,
    buckets: [],
    summary: null,
    fetchedAt: new Date(),
  });
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  it('serves an expired answer, marked stale, when the call to replace it fails, and reports it for every load served it', async () => {
    const outcomes: CacheOutcome[] = [];
    let fail = false;
    const cache = createLinkStructureCache({
      fetch: async (request) => {
        if (fail) throw new UpstreamError('UPSTREAM_UNAVAILABLE', 'down');
        return structure(request.kolId);
      },
      ttlMs: 300,
      staleMs: 10_000,
      maxEntries: 10,
      onLookup: (outcome) => outcomes.push(outcome),
    });
    const request = { kolId: '1', acceptCache: false, platform: 'SHORT_VIDEO' as const };
    expect((await cache.load(request)).stale).toBeUndefined();
    expect(cache.peek(request)).toBe('fresh');
    await sleep(350);
    expect(cache.peek(request)).toBe('stale');
    fail = true;
    const first: CacheOutcome[] = [];
    const joiner: CacheOutcome[] = [];
    const [a, b] = await Promise.all([cache.load(request, (o) => first.push(o)), cache.load(request, (o) => joiner.push(o))]);
    expect(a).toEqual({ ...structure('1'), fetchedAt: a.fetchedAt, stale: true });
    expect(b).toBe(a);
    // peek() reported nothing; the failed call shared by two loads served each of them stale (a request's log line
    // says so whether it started the call or joined it). The join is reported once the call it joined has ended.
    expect(outcomes).toEqual(['miss', 'miss', 'stale', 'join', 'stale']);
    expect(first).toEqual(['miss', 'stale']);
    expect(joiner).toEqual(['join', 'stale']);
    // A failure is not kept: the answer stays expired, so the next load tries the upstream again.
    expect(cache.peek(request)).toBe('stale');
    await expect(cache.load({ kolId: '2', acceptCache: false, platform: 'SHORT_VIDEO' })).rejects.toThrow('down');
  });

  it('acceptCache: true joins the call in flight for the fresh answer, and keeps its own expired copy if that call fails', async () => {
    let calls = 0;
    let fail = false;
    const cache = createLinkStructureCache({
      fetch: async (request) => {
        calls += 1;
        await sleep(30);
        if (fail) throw new UpstreamError('UPSTREAM_UNAVAILABLE', 'down');
        return structure(request.kolId);
      },
      ttlMs: 300,
      staleMs: 10_000,
      maxEntries: 10,
    });
    const fresh = { kolId: '1', acceptCache: false, platform: 'SHORT_VIDEO' as const };
    const cached = { ...fresh, acceptCache: true };
    const joined: CacheOutcome[] = [];
    const [a, b] = await Promise.all([cache.load(fresh), cache.load(cached, (outcome) => joined.push(outcome))]);
    expect(b).toBe(a);
    expect(calls).toBe(1);
    expect(joined).toEqual(['join']);
    await sleep(350);
    cache.clear();
    // Now only the acceptCache request has a copy; once it has expired, a load of the plain request leads a call
    // that fails, and the acceptCache load that joined it falls back on that copy.
    await cache.load(cached);
    expect(calls).toBe(2);
    await sleep(350);
    fail = true;
    const outcomes: CacheOutcome[] = [];
    const [plain, withCache] = await Promise.allSettled([cache.load(fresh), cache.load(cached, (outcome) => outcomes.push(outcome))]);
    expect(calls).toBe(3);
    expect(plain.status).toBe('rejected');
    expect(withCache).toMatchObject({ status: 'fulfilled', value: { kolId: '1', stale: true } });
    expect(outcomes).toEqual(['join', 'stale']);
  });

  it('tells a call when every request that asked for it has gone, and renews that when another asks', async () => {
    let interest: CallInterest | undefined;
    let finish: (value: LinkStructure) => void = () => {};
    const cache = createLinkStructureCache({
      fetch: (_request, _via, given) => {
        interest = given;
        return new Promise<LinkStructure>((resolve) => (finish = resolve));
      },
      ttlMs: 1_000,
      maxEntries: 10,
    });
    const request = { kolId: '1', acceptCache: false, platform: 'SHORT_VIDEO' as const };
    const [a, b, c] = [new AbortController(), new AbortController(), new AbortController()];
    const loads = [cache.load(request, undefined, undefined, a.signal), cache.load(request, undefined, undefined, b.signal)];
    a.abort();
    expect(interest!.lost.aborted).toBe(false);
    b.abort();
    expect(interest!.lost.aborted).toBe(true);
    // Asked again before the call gave up: wanted again.
    loads.push(cache.load(request, undefined, undefined, c.signal));
    expect(interest!.lost.aborted).toBe(false);
    // A load that cannot go (no signal) keeps it wanted for good.
    loads.push(cache.load(request));
    c.abort();
    expect(interest!.lost.aborted).toBe(false);
    finish(structure('1'));
    await Promise.all(loads);
  });

  it('a join whose call is given up counts nothing: the load it makes instead gives the lookup its one outcome', async () => {
    const outcomes: CacheOutcome[] = [];
    // Each call is given up unsent once every request that asked for it has gone, and answered otherwise.
    const cache = createLinkStructureCache({
      fetch: (request, via, interest) =>
        new Promise<LinkStructure>((resolve, reject) => {
          if (interest?.lost.aborted) return reject(new CallAbandoned());
          const sent = setTimeout(() => {
            via?.('upstream');
            resolve(structure(request.kolId));
          }, 20);
          interest?.lost.addEventListener(
            'abort',
            () => {
              clearTimeout(sent);
              reject(new CallAbandoned());
            },
            { once: true },
          );
        }),
      ttlMs: 1_000,
      maxEntries: 10,
      onLookup: (outcome) => outcomes.push(outcome),
    });
    const request = (kolId: string) => ({ kolId, acceptCache: false, platform: 'SHORT_VIDEO' as const });

    // A join the cost check counted on: the call it planned to join was given up before the load ran.
    const leaving = new AbortController();
    const first = cache.load(request('1'), undefined, undefined, leaving.signal);
    const planned = new Map();
    expect(cache.upstreamCallsFor([request('1')], planned)).toBe(0);
    leaving.abort();
    await expect(first).rejects.toBeInstanceOf(CallAbandoned);
    const joiner: CacheOutcome[] = [];
    expect((await cache.load(request('1'), (outcome) => joiner.push(outcome), planned, new AbortController().signal)).kolId).toBe('1');
    expect(joiner).toEqual(['miss', 'attempt', 'upstream']);
    expect(outcomes).toEqual(['miss', 'miss', 'upstream']);

    // A join of a call in flight, given up once its asker and the joiner have both gone: the joiner's own call, for
    // nobody, is given up too. One lookup each, a miss.
    outcomes.length = 0;
    const [asker, joining] = [new AbortController(), new AbortController()];
    const led = cache.load(request('2'), undefined, undefined, asker.signal);
    const seen: CacheOutcome[] = [];
    const joined = cache.load(request('2'), (outcome) => seen.push(outcome), undefined, joining.signal);
    asker.abort();
    joining.abort();
    await expect(led).rejects.toBeInstanceOf(CallAbandoned);
    await expect(joined).rejects.toBeInstanceOf(CallAbandoned);
    expect(seen).toEqual(['miss']);
    expect(outcomes).toEqual(['miss', 'miss']);
    // A join whose call ends is reported then, once.
    const [answered, sharing] = await Promise.all([cache.load(request('3')), cache.load(request('3'), (outcome) => seen.push(outcome))]);
    expect(sharing).toBe(answered);
    expect(seen).toEqual(['miss', 'join']);
  });

  it('keeps nothing past CACHE_STALE_SECONDS, and nothing at all when it is 0', async () => {
    const failing = async (): Promise<LinkStructure> => {
      throw new UpstreamError('UPSTREAM_UNAVAILABLE', 'down');
    };
    for (const staleMs of [0, 30]) {
      let fetch = async (request: { kolId: string }) => structure(request.kolId);
      const cache = createLinkStructureCache({ fetch: (request) => fetch(request), ttlMs: 20, staleMs, maxEntries: 10 });
      const request = { kolId: '1', acceptCache: false, platform: 'SHORT_VIDEO' as const };
      await cache.load(request);
      await sleep(70);
      expect(cache.peek(request)).toBe('absent');
      fetch = failing;
      await expect(cache.load(request)).rejects.toThrow('down');
    }
  });
});
