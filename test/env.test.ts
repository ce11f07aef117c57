import { describe, expect, it } from 'vitest';
import { parseEnv } from '../src/env.js';

describe('configuration', () => {
  it('treats empty variables as unset and fills in the documented defaults', () => {
    const parsed = parseEnv({ UPSTREAM_TIMEOUT_MS: '', CACHE_TTL_SECONDS: ' ' });
    expect(parsed.ok && parsed.env).toMatchObject({
      JUSTONEAPI_BASE_URL: 'https://api.justoneapi.com',
      UPSTREAM_TIMEOUT_MS: 60_000,
      UPSTREAM_RETRIES: 2,
      UPSTREAM_RETRY_BASE_MS: 500,
      UPSTREAM_CONCURRENCY: 8,
      CACHE_TTL_SECONDS: 900,
      CACHE_MAX_ENTRIES: 10_000,
      MAX_KOL_IDS: 100,
      PORT: 4000,
      HOST: '0.0.0.0',
    });
  });

  it('refuses timeouts longer than a Node timer can hold, naming each variable, instead of firing them after 1 ms', () => {
    const parsed = parseEnv({
      UPSTREAM_TIMEOUT_MS: '2147483648',
      UPSTREAM_RETRY_BASE_MS: '3000000000',
      REDIS_TIMEOUT_MS: '2147483648',
      UPSTREAM_BACKOFF_MAX_MS: '9999999999',
      SHUTDOWN_TIMEOUT_MS: '2147483648',
    });
    expect(parsed.ok).toBe(false);
    const problems = parsed.ok ? '' : parsed.problems.join('\n');
    for (const variable of ['UPSTREAM_TIMEOUT_MS', 'UPSTREAM_RETRY_BASE_MS', 'REDIS_TIMEOUT_MS', 'UPSTREAM_BACKOFF_MAX_MS', 'SHUTDOWN_TIMEOUT_MS']) {
      expect(problems).toContain(`${variable}: must be at most`);
    }
    // The longest that still works is accepted.
    const longest = parseEnv({ UPSTREAM_TIMEOUT_MS: '2147482647' });
    expect(longest.ok && longest.env.UPSTREAM_TIMEOUT_MS).toBe(2_147_482_647);
  });
});
