import { z } from 'zod';
import { logLevels } from './logger.js';

// An empty variable counts as unset, so `FOO=` in a compose file means "use the default".
const unsetIfEmpty = (value: unknown) => (typeof value === 'string' && value.trim() === '' ? undefined : value);
const int = (min: number, fallback: number) => z.preprocess(unsetIfEmpty, z.coerce.number().int().min(min).default(fallback));

const upstream = z.object({
  JUSTONEAPI_TOKEN: z.preprocess(unsetIfEmpty, z.string().optional()),
  JUSTONEAPI_BASE_URL: z.preprocess(unsetIfEmpty, z.url({ protocol: /^https?$/ }).default('https://api.justoneapi.com')),
  UPSTREAM_TIMEOUT_MS: int(1, 60_000),
  UPSTREAM_RETRIES: int(0, 2),
  UPSTREAM_RETRY_BASE_MS: int(0, 500),
  UPSTREAM_CONCURRENCY: int(1, 8),
});

const cache = z.object({
  CACHE_TTL_SECONDS: int(0, 900),
  CACHE_MAX_ENTRIES: int(1, 10_000),
});

const server = z.object({
  PORT: int(0, 4000).pipe(z.number().max(65_535)),
  HOST: z.preprocess(unsetIfEmpty, z.string().default('0.0.0.0')),
  MAX_KOL_IDS: int(1, 100),
  LOG_LEVEL: z.preprocess(unsetIfEmpty, z.enum(logLevels).default('info')),
});

const observability = z.object({
  // `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`): off removes GET /metrics and stops recording.
  METRICS_ENABLED: z.preprocess(unsetIfEmpty, z.stringbool().default(true)),
});

const environment = upstream.extend(cache.shape).extend(server.shape).extend(observability.shape);

export type Env = z.infer<typeof environment>;

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
