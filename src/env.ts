import { z } from 'zod';
import { logLevels } from './logger.js';
import { linkEndpointModes } from './upstream/link-struct-endpoints.js';

// An empty variable counts as unset, so `FOO=` in a compose file means "use the default".
const unsetIfEmpty = (value: unknown) => (typeof value === 'string' && value.trim() === '' ? undefined : value);
// Written in decimal digits: Number() would also take `0x1F90`, `1e3` or `0b1`, which no one means in a setting.
const decimal = (pattern: RegExp, what: string) => (value: unknown) =>
  typeof value === 'string' ? (pattern.test(value.trim()) ? Number(value) : `not ${what}`) : value;
// A sign is let through, so a negative value is told its bound rather than that it is not a number.
const wholeNumber = decimal(/^-?\d+$/, 'a whole number');
const int = (min: number, fallback: number, max?: number, maxMessage = `must be at most ${max}`) =>
  z.preprocess(
    (value) => wholeNumber(unsetIfEmpty(value)),
    z
      .number({ error: (issue) => (issue.code === 'invalid_type' ? 'must be a whole number (decimal digits)' : undefined) })
      .min(min, `must be at least ${min}`)
      .max(max ?? Number.MAX_SAFE_INTEGER, max === undefined ? 'is too large' : maxMessage)
      .default(fallback),
  );
// Node's timers hold at most 2^31 − 1 ms (about 24.8 days): a longer one fires after 1 ms instead, so it is refused.
const longestTimerMs = 2_147_483_647;
const timerMs = (min: number, fallback: number, headroomMs = 0) =>
  int(min, fallback, longestTimerMs - headroomMs, `must be at most ${longestTimerMs - headroomMs} ms (the longest timer Node can set${
    headroomMs === 0 ? '' : `, less ${headroomMs} ms for timers set past it`
  })`);

const upstream = z.object({
  // Trimmed: a token read from a secret file often ends in a newline, which would be sent (and refused, code 100).
  JUSTONEAPI_TOKEN: z.preprocess(unsetIfEmpty, z.string().trim().optional()),
  JUSTONEAPI_BASE_URL: z.preprocess(
    unsetIfEmpty,
    z
      .url({ protocol: /^https?$/ })
      // They were dropped without a word: credentials here were never sent (the token has its own variable), nor was a query.
      .refine(isBareBaseUrl, { message: 'must be an origin with an optional path: no user:password@, ?query or #fragment' })
      .default('https://api.justoneapi.com'),
  ),
  // undici's own socket timeouts are set 1 s past it.
  UPSTREAM_TIMEOUT_MS: timerMs(1, 60_000, 1_000),
  // Each is a request that may be billed: ten is already more than a paid API deserves.
  UPSTREAM_RETRIES: int(0, 2, 10),
  UPSTREAM_RETRY_BASE_MS: timerMs(0, 500),
  UPSTREAM_CONCURRENCY: int(1, 8),
});

// Which Just One API endpoint answers link structures: the deprecated v1, its replacement gw, or auto (v1 until it is gone).
const linkEndpoint = z.object({
  JUSTONEAPI_LINK_ENDPOINT: z.preprocess(unsetIfEmpty, z.enum(linkEndpointModes).default('auto')),
});

const cache = z.object({
  // A year at most, each: Redis refuses expiries past what a millisecond count in 64 bits holds, and the sum is one.
  CACHE_TTL_SECONDS: int(0, 900, 31_536_000),
  // The LRU sets aside room for this many entries when it is made, before any is cached.
  CACHE_MAX_ENTRIES: int(1, 10_000, 1_000_000),
  CACHE_STALE_SECONDS: int(0, 86_400, 31_536_000),
});

/** Whether a URL is an origin and a path only: what the upstream client keeps of JUSTONEAPI_BASE_URL. */
function isBareBaseUrl(url: string): boolean {
  // Not a URL at all: z.url() has said so already.
  if (!URL.canParse(url)) return true;
  const { username, password } = new URL(url);
  return username === '' && password === '' && !url.includes('?') && !url.includes('#');
}

// Credentials in a URL are percent-encoded; a malformed escape would only fail later, when they are decoded.
const decodesCleanly = (url: string) => {
  // Not a URL at all: z.url() has said so already.
  if (!URL.canParse(url)) return true;
  const { username, password } = new URL(url);
  try {
    decodeURIComponent(username);
    decodeURIComponent(password);
    return true;
  } catch {
    return false;
  }
};

const hasRedisHost = (url: string) => /^rediss?:\/\/[^/?#]/i.test(url) && URL.canParse(url) && new URL(url).hostname !== '';

// Unset REDIS_URL: the in-process cache alone. Set: Redis behind it, shared by every replica.
const sharedCache = z.object({
  REDIS_URL: z.preprocess(
    unsetIfEmpty,
    z
      .url({ protocol: /^rediss?$/ })
      // `redis:/:pw@host` parses as a URL with no host (and so no password to redact), and ioredis takes it for a
      // socket path, which its errors then quote: only the full form is accepted.
      .refine(hasRedisHost, 'must be redis://[user:password@]host[:port][/db] or rediss://…, with a host')
      // ioredis reads the path with parseInt: `/abc` became NaN (database 0, yet the fill channel named `filled:dbNaN`, so
      // replicas on database 0 never heard each other), `/1abc` database 1.
      // (A URL without a host has been refused already.)
      .refine((url) => !hasRedisHost(url) || /^\/?(\d+)?$/.test(new URL(url).pathname), 'the database after the host must be a number, such as /0 or /2')
      // The message never quotes the URL: it may hold the password.
      .refine(decodesCleanly, 'the user name or password has a malformed percent-escape (write % as %25)')
      .optional(),
  ),
  REDIS_KEY_PREFIX: z.preprocess(unsetIfEmpty, z.string().default('xingtu-gw:v1:')),
  REDIS_TIMEOUT_MS: timerMs(1, 200),
});

const server = z.object({
  PORT: int(0, 4000, 65_535),
  HOST: z.preprocess(unsetIfEmpty, z.string().trim().default('0.0.0.0')),
  MAX_KOL_IDS: int(1, 100),
  LOG_LEVEL: z.preprocess(unsetIfEmpty, z.enum(logLevels).default('info')),
});

const federation = z.object({
  // Apollo federated tracing: per-field timings in `extensions.ftv1` for a router that asks for them.
  // Off by default, since any client can send the header that asks.
  FEDERATION_TRACING: z.preprocess(unsetIfEmpty, z.stringbool().default(false)),
});

// A comma-separated list; blanks between commas are dropped. A value that is set but names nothing (`,` — what
// `"${A},${B}"` gives when both are unset) is refused rather than read as unset: for API keys it would mean open.
const list = <T extends z.ZodType<string>>(item: T, noneMessage: string) =>
  z.preprocess(
    (value: unknown) => {
      if (typeof value !== 'string') return value;
      const items = value.split(',').map((entry) => entry.trim()).filter(Boolean);
      return items.length === 0 && value.trim() !== '' ? null : items;
    },
    z.array(item, { error: noneMessage }).default([]),
  );
// An origin as browsers send it (scheme, host, port; no path, no trailing slash), or `*` alone. Node computes an
// origin for http(s) only (`null` for chrome-extension://…, capacitor://…), so other schemes are checked by shape.
const isOrigin = (value: string) => {
  if (!/^[a-z][a-z0-9+.-]*:\/\/[^/?#\s@]+$/i.test(value) || !URL.canParse(value)) return false;
  const url = new URL(value);
  return url.protocol === 'http:' || url.protocol === 'https:' ? url.origin === value : true;
};
const origin = z.string().refine((value) => value === '*' || isOrigin(value), {
  error: 'each entry must be an origin such as https://app.example.com (no path or trailing slash), or * alone',
});
// true/false, 1/0, yes/no, on/off.
const flag = (fallback: boolean) => z.preprocess(unsetIfEmpty, z.stringbool().default(fallback));
const seconds = (fallback: number, max: number, maxMessage: string) =>
  z.preprocess(
    (value) => decimal(/^-?(\d+\.?\d*|\.\d+)$/, 'a number of seconds')(unsetIfEmpty(value)),
    z
      .number({ error: (issue) => (issue.code === 'invalid_type' ? 'must be a number of seconds, such as 60 or 0.5' : undefined) })
      .min(0, 'must be at least 0')
      .max(max, maxMessage)
      .default(fallback),
  );

/** Who may call the gateway, how much one operation and one client may spend, and how it fails and stops. */
const hardening = z.object({
  GATEWAY_API_KEYS: list(
    z.string().min(16, 'each key needs at least 16 characters').regex(/^[\x21-\x7e]+$/, 'keys are printable ASCII without spaces'),
    'is set but names no key (only commas and blanks): give at least one key, or unset it to run open',
  ),
  CORS_ORIGINS: list(origin, 'is set but names no origin (only commas and blanks)').refine(
    (origins) => !origins.includes('*') || origins.length === 1,
    '* allows every origin: give it alone, or list the origins without it',
  ),
  GRAPHIQL: flag(true),
  INTROSPECTION: flag(true),
  MAX_QUERY_DEPTH: int(1, 10),
  MAX_ALIASES: int(0, 30),
  MAX_QUERY_TOKENS: int(1, 1_000),
  MAX_REPEATED_FIELDS: int(0, 50),
  MAX_REQUEST_BYTES: int(1, 100_000),
  MAX_UPSTREAM_CALLS_PER_OPERATION: int(1, 100),
  MAX_RESULT_FIELDS: int(1, 5_000),
  RATE_LIMIT_PER_MINUTE: int(0, 300),
  // The breaker probes the upstream once per cooldown, so a longer one only delays recovery; milliseconds written here
  // by mistake (60000) would refuse every creator for 17 hours.
  BREAKER_COOLDOWN_SECONDS: seconds(60, 3_600, 'must be at most 3600 (an hour; the value is in seconds)'),
  UPSTREAM_BACKOFF_MAX_MS: timerMs(0, 30_000),
  SHUTDOWN_TIMEOUT_MS: timerMs(0, 25_000),
  // Load balancers take seconds to stop sending a stopping replica traffic; minutes would be a unit mistake holding
  // every rollout (and the orchestrator's grace period must cover it as well as SHUTDOWN_TIMEOUT_MS).
  SHUTDOWN_DELAY_MS: int(0, 0, 120_000, 'must be at most 120000 ms (two minutes)'),
});

const observability = z.object({
  // `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`): off removes GET /metrics and stops recording.
  METRICS_ENABLED: z.preprocess(unsetIfEmpty, z.stringbool().default(true)),
  // The operations given a metric series of their own; every other name is `(other)`. Unset: the first 100 names seen.
  METRICS_OPERATION_NAMES: list(
    z
      .string()
      .max(128, 'each name has at most 128 characters')
      .regex(/^[_A-Za-z][_0-9A-Za-z]*$/, 'each entry must be a GraphQL operation name (letters, digits, _)'),
    'is set but names no operation (only commas and blanks)',
  ),
});

const environment = upstream
  .extend(cache.shape)
  .extend(sharedCache.shape)
  .extend(server.shape)
  .extend(linkEndpoint.shape)
  .extend(federation.shape)
  .extend(hardening.shape)
  .extend(observability.shape);

export type Env = z.infer<typeof environment>;

/** Every variable read, optional ones included (test/docs.test.ts checks the README's tables against it). */
export const configurationVariables = Object.keys(environment.shape) as (keyof Env)[];

export type EnvResult = { ok: true; env: Env } | { ok: false; problems: string[] };

/** Parses configuration from a set of variables; every problem is reported, each naming its variable. */
export function parseEnv(source: Record<string, string | undefined>): EnvResult {
  const result = environment.safeParse(source);
  if (result.success) return { ok: true, env: result.data };
  return {
    ok: false,
    problems: result.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`),
  };
}

/** The only reader of process.env: a bad value stops start-up with every problem printed. */
export function loadEnv(source: Record<string, string | undefined> = process.env): Env {
  const result = parseEnv(source);
  if (result.ok) return result.env;
  process.stderr.write(`Invalid configuration:\n${result.problems.map((problem) => `  - ${problem}`).join('\n')}\n`);
  process.exit(1);
}
