/**
 * What the Redis level adds to a cache hit: latency of an in-process LRU hit versus a Redis hit (LRU miss,
 * fresh entry in Redis), measured one request at a time on this machine, against a throwaway redis-server on
 * loopback and a fake upstream. `npm run bench:redis [count]`. Numbers, not assertions: see the README.
 */
import { startFakeUpstream } from '../test/fake-upstream.js';
import { createTestGateway, type TestGateway } from '../test/gateway.js';
import { startRedisServer } from '../test/redis-server.js';

const count = Number(process.argv[2] ?? 2000);
const kolIds = Array.from({ length: count }, (_, index) => String(9_000_000 + index));
const request = (kolId: string) => ({ kolId, acceptCache: false, platform: 'SHORT_VIDEO' as const });
const query = (kolId: string) => `{ creator(kolId: "${kolId}") { linkStructure { fetchedAt summary { value } } } }`;

async function timeEach(run: (kolId: string) => Promise<unknown>): Promise<number[]> {
  const samples: number[] = [];
  for (const kolId of kolIds) {
    const started = performance.now();
    await run(kolId);
    samples.push(performance.now() - started);
  }
  return samples;
}

function summary(samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  const mean = samples.reduce((sum, value) => sum + value, 0) / samples.length;
  const ms = (value: number) => `${value.toFixed(3)} ms`;
  return { mean: ms(mean), p50: ms(at(0.5)), p90: ms(at(0.9)), p99: ms(at(0.99)) };
}

const upstream = await startFakeUpstream();
const redis = await startRedisServer();
// One sequential client asks for thousands of creators: the per-client rate limit would refuse it, and a refusal is fast.
const vars = { REDIS_URL: redis.url, LOG_LEVEL: 'warn', CACHE_MAX_ENTRIES: String(count * 2), RATE_LIMIT_PER_MINUTE: '0' };
/** A GraphQL request that must have answered with data: a timing of an error would say nothing about the cache. */
async function answered(gateway: TestGateway, kolId: string) {
  const { body } = await gateway.query(query(kolId));
  if (body.errors) throw new Error(`creator ${kolId}: ${JSON.stringify(body.errors)}`);
}
const [filler, direct, graphql] = [0, 1, 2].map(() => createTestGateway(upstream.url, vars)) as [TestGateway, TestGateway, TestGateway];
try {
  const deadline = Date.now() + 10_000;
  while (![filler, direct, graphql].every((gateway) => gateway.sharedTier?.status === 'ready')) {
    if (Date.now() > deadline) throw new Error('Redis did not become ready');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  // One replica pays for every creator; the two others only ever read.
  for (const kolId of kolIds) await filler.cache.load(request(kolId));
  const upstreamCallsAfterFill = upstream.calls();

  // Warm-up (JIT, connections) on creators outside the measured set.
  for (let index = 0; index < 200; index += 1) {
    await filler.cache.load(request(String(index + 1)));
    await direct.cache.load(request(String(index + 1)));
    await answered(graphql, String(index + 1));
  }
  const warmUpCalls = upstream.calls() - upstreamCallsAfterFill;

  const cacheRedisHit = await timeEach((kolId) => direct.cache.load(request(kolId)));
  const cacheLruHit = await timeEach((kolId) => direct.cache.load(request(kolId)));
  const graphqlRedisHit = await timeEach((kolId) => answered(graphql, kolId));
  const graphqlLruHit = await timeEach((kolId) => answered(graphql, kolId));

  const median = (samples: number[]) => [...samples].sort((a, b) => a - b)[Math.floor(samples.length / 2)]!;
  console.log(
    JSON.stringify(
      {
        creators: count,
        upstreamCalls: { fill: upstreamCallsAfterFill, readersDuringMeasurement: upstream.calls() - upstreamCallsAfterFill - warmUpCalls },
        redisHits: { cacheLevel: direct.sharedTier?.counters.redis_hit, graphqlLevel: graphql.sharedTier?.counters.redis_hit },
        'cache.load, LRU hit': summary(cacheLruHit),
        'cache.load, Redis hit (LRU miss)': summary(cacheRedisHit),
        'GraphQL request, LRU hit': summary(graphqlLruHit),
        'GraphQL request, Redis hit (LRU miss)': summary(graphqlRedisHit),
        'added by a Redis hit (median)': {
          cacheLevel: `${(median(cacheRedisHit) - median(cacheLruHit)).toFixed(3)} ms`,
          graphqlLevel: `${(median(graphqlRedisHit) - median(graphqlLruHit)).toFixed(3)} ms`,
        },
      },
      null,
      2,
    ),
  );
} finally {
  await Promise.all([filler, direct, graphql].map((gateway) => gateway.close()));
  await redis.close();
  await upstream.close();
}
