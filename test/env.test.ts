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
    // Each names its own bound: UPSTREAM_TIMEOUT_MS keeps a second for undici's socket timeouts set past it.
    expect(problems).toContain('UPSTREAM_TIMEOUT_MS: must be at most 2147482647 ms (the longest timer Node can set, less 1000 ms');
    expect(problems).toContain('SHUTDOWN_TIMEOUT_MS: must be at most 2147483647 ms (the longest timer Node can set)');
    // The longest that still works is accepted.
    const longest = parseEnv({ UPSTREAM_TIMEOUT_MS: '2147482647' });
    expect(longest.ok && longest.env.UPSTREAM_TIMEOUT_MS).toBe(2_147_482_647);
  });

  const problemsOf = (source: Record<string, string>) => {
    const parsed = parseEnv(source);
    return parsed.ok ? [] : parsed.problems;
  };

  it('refuses a GATEWAY_API_KEYS or CORS_ORIGINS that is set but names nothing, rather than running open', () => {
    for (const value of [',', ' , ', ',,']) {
      expect(problemsOf({ GATEWAY_API_KEYS: value })).toEqual([expect.stringMatching(/^GATEWAY_API_KEYS: is set but names no key/)]);
      expect(problemsOf({ CORS_ORIGINS: value })).toEqual([expect.stringMatching(/^CORS_ORIGINS: is set but names no origin/)]);
    }
    const unset = parseEnv({ GATEWAY_API_KEYS: '' });
    expect(unset.ok && unset.env.GATEWAY_API_KEYS).toEqual([]);
  });

  it('takes CORS_ORIGINS as browsers send origins, and * only alone', () => {
    const fine = parseEnv({ CORS_ORIGINS: 'https://app.example.com, http://localhost:3000' });
    expect(fine.ok && fine.env.CORS_ORIGINS).toEqual(['https://app.example.com', 'http://localhost:3000']);
    for (const value of ['https://app.example.com/', 'app.example.com', 'https://app.example.com/path']) {
      expect(problemsOf({ CORS_ORIGINS: value })[0]).toMatch(/^CORS_ORIGINS\.0: each entry must be an origin/);
    }
    expect(problemsOf({ CORS_ORIGINS: 'https://a.example.com,*' })).toEqual([expect.stringMatching(/^CORS_ORIGINS: \* allows every origin/)]);
    const any = parseEnv({ CORS_ORIGINS: '*' });
    expect(any.ok && any.env.CORS_ORIGINS).toEqual(['*']);
    // Origins of other schemes, as browsers send them for extensions and app shells.
    const apps = parseEnv({ CORS_ORIGINS: 'chrome-extension://abcdefghijklmnop,capacitor://localhost,http://[::1]:3000' });
    expect(apps.ok && apps.env.CORS_ORIGINS).toEqual(['chrome-extension://abcdefghijklmnop', 'capacitor://localhost', 'http://[::1]:3000']);
    for (const value of ['capacitor://localhost/app', 'foo://user:pw@host']) {
      expect(problemsOf({ CORS_ORIGINS: value })[0]).toMatch(/^CORS_ORIGINS\.0: each entry must be an origin/);
    }
  });

  it('takes JUSTONEAPI_BASE_URL as an origin and a path; credentials, a query or a fragment (dropped before) are refused', () => {
    for (const value of ['https://user:s3cr3t@api.example.com', 'https://api.example.com/?token=s3cr3t', 'https://api.example.com/prefix#s3cr3t']) {
      const problems = problemsOf({ JUSTONEAPI_BASE_URL: value });
      expect(problems).toEqual([expect.stringMatching(/^JUSTONEAPI_BASE_URL: must be an origin with an optional path/)]);
      expect(problems[0]).not.toContain('s3cr3t');
    }
    for (const value of ['https://api.example.com', 'http://127.0.0.1:8080/proxy/', 'https://api.example.com/a%20b']) {
      const parsed = parseEnv({ JUSTONEAPI_BASE_URL: value });
      expect(parsed.ok && parsed.env.JUSTONEAPI_BASE_URL).toBe(value);
    }
  });

  it('caps what would break Redis or bill without end: cache TTLs at a year, UPSTREAM_RETRIES at 10; trims HOST', () => {
    expect(problemsOf({ CACHE_TTL_SECONDS: '31536001' })).toEqual([expect.stringMatching(/^CACHE_TTL_SECONDS: must be at most 31536000/)]);
    expect(problemsOf({ CACHE_STALE_SECONDS: '5000000000000000' })).toEqual([expect.stringMatching(/^CACHE_STALE_SECONDS: must be at most/)]);
    expect(problemsOf({ UPSTREAM_RETRIES: '11' })).toEqual([expect.stringMatching(/^UPSTREAM_RETRIES: must be at most 10/)]);
    const fine = parseEnv({ CACHE_TTL_SECONDS: '31536000', UPSTREAM_RETRIES: '10', HOST: ' 127.0.0.1 ' });
    expect(fine.ok && [fine.env.CACHE_TTL_SECONDS, fine.env.UPSTREAM_RETRIES, fine.env.HOST]).toEqual([31_536_000, 10, '127.0.0.1']);
  });

  it('SHUTDOWN_DELAY_MS is off unless set, and at most two minutes (more would be a unit mistake holding every rollout)', () => {
    const unset = parseEnv({});
    expect(unset.ok && unset.env.SHUTDOWN_DELAY_MS).toBe(0);
    const fine = parseEnv({ SHUTDOWN_DELAY_MS: '120000' });
    expect(fine.ok && fine.env.SHUTDOWN_DELAY_MS).toBe(120_000);
    expect(problemsOf({ SHUTDOWN_DELAY_MS: '120001' })).toEqual(['SHUTDOWN_DELAY_MS: must be at most 120000 ms (two minutes)']);
    expect(problemsOf({ SHUTDOWN_DELAY_MS: '-1' })).toEqual(['SHUTDOWN_DELAY_MS: must be at least 0']);
    expect(problemsOf({ SHUTDOWN_DELAY_MS: '5s' })).toEqual(['SHUTDOWN_DELAY_MS: must be a whole number (decimal digits)']);
  });

  it('accepts REDIS_URL only in full (redis://host…), since a malformed one hides its password from redaction', () => {
    for (const value of ['redis:/:s3cr3t-password@cache', 'redis:s3cr3t-password@cache:6379', 'redis://']) {
      const problems = problemsOf({ REDIS_URL: value });
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(/^REDIS_URL: /);
      expect(problems[0]).not.toContain('s3cr3t');
    }
    const fine = parseEnv({ REDIS_URL: 'redis://:s3cr3t-password@cache:6379/2' });
    expect(fine.ok).toBe(true);
  });

  it('refuses a REDIS_URL database that is not a number, which ioredis reads as NaN (database 0, pub/sub channel filled:dbNaN)', () => {
    for (const value of ['redis://:s3cr3t-password@cache:6379/abc', 'redis://cache:6379/1abc', 'redis://cache/0/']) {
      const problems = problemsOf({ REDIS_URL: value });
      expect(problems).toEqual(['REDIS_URL: the database after the host must be a number, such as /0 or /2']);
    }
    for (const value of ['redis://cache', 'redis://cache/', 'redis://cache:6379/0', 'rediss://cache:6380/15']) expect(parseEnv({ REDIS_URL: value }).ok).toBe(true);
  });

  it('takes the switch values the README lists, in any case, and refuses anything else', () => {
    for (const [value, on] of [['true', true], ['1', true], ['YES', true], ['on', true], ['y', true], ['Enabled', true],
      ['false', false], ['0', false], ['no', false], ['OFF', false], ['n', false], ['disabled', false]] as const) {
      const parsed = parseEnv({ METRICS_ENABLED: value });
      expect(parsed.ok && parsed.env.METRICS_ENABLED, value).toBe(on);
    }
    expect(problemsOf({ METRICS_ENABLED: 'maybe' }).join('\n')).toContain('METRICS_ENABLED');
  });

  it('reads numbers in decimal only, bounds CACHE_MAX_ENTRIES, and trims the token', () => {
    expect(problemsOf({ PORT: '0x1F90', UPSTREAM_TIMEOUT_MS: '1e3', BREAKER_COOLDOWN_SECONDS: '1e2' })).toEqual([
      'UPSTREAM_TIMEOUT_MS: must be a whole number (decimal digits)',
      'PORT: must be a whole number (decimal digits)',
      'BREAKER_COOLDOWN_SECONDS: must be a number of seconds, such as 60 or 0.5',
    ]);
    const padded = parseEnv({ PORT: ' 8080 ', BREAKER_COOLDOWN_SECONDS: '0.5', JUSTONEAPI_TOKEN: 'tok_from_a_file\n' });
    expect(padded.ok && [padded.env.PORT, padded.env.BREAKER_COOLDOWN_SECONDS, padded.env.JUSTONEAPI_TOKEN]).toEqual([8080, 0.5, 'tok_from_a_file']);
    expect(problemsOf({ CACHE_MAX_ENTRIES: '1000001', UPSTREAM_CONCURRENCY: '-1', PORT: '70000', MAX_KOL_IDS: '99999999999999999999' })).toEqual([
      'UPSTREAM_CONCURRENCY: must be at least 1',
      'CACHE_MAX_ENTRIES: must be at most 1000000',
      'PORT: must be at most 65535',
      'MAX_KOL_IDS: is too large',
    ]);
    expect(problemsOf({ BREAKER_COOLDOWN_SECONDS: '-1' })).toEqual(['BREAKER_COOLDOWN_SECONDS: must be at least 0']);
    // Milliseconds written by mistake: every creator refused for 17 hours.
    expect(problemsOf({ BREAKER_COOLDOWN_SECONDS: '60000' })).toEqual(['BREAKER_COOLDOWN_SECONDS: must be at most 3600 (an hour; the value is in seconds)']);
    expect(parseEnv({ BREAKER_COOLDOWN_SECONDS: '3600' }).ok).toBe(true);
    const fractions = ['.5', '5.', '0.25'].map((value) => {
      const parsed = parseEnv({ BREAKER_COOLDOWN_SECONDS: value });
      return parsed.ok && parsed.env.BREAKER_COOLDOWN_SECONDS;
    });
    expect(fractions).toEqual([0.5, 5, 0.25]);
    const most = parseEnv({ CACHE_MAX_ENTRIES: '1000000' });
    expect(most.ok && most.env.CACHE_MAX_ENTRIES).toBe(1_000_000);
  });
});
