import { describe, expect, it } from 'vitest';
import { createApp } from '../src/app.js';
import { parseEnv } from '../src/env.js';
import type { LinkStructureCache } from '../src/link-structure/link-structure-cache.js';
import { createLogger } from '../src/logger.js';
import { createProtection } from '../src/protection/protection.js';
import { createRequestObserver } from '../src/request-observer.js';

/** The real app around a cache that fails the way no coded error describes: a bug, a broken dependency. */
function appWithBrokenCache(thrown: unknown) {
  const parsed = parseEnv({ LOG_LEVEL: 'debug' });
  if (!parsed.ok) throw new Error(parsed.problems.join('\n'));
  const lines: Array<Record<string, unknown>> = [];
  const raw: string[] = [];
  const logger = createLogger({
    level: 'debug',
    write: (line) => {
      raw.push(line);
      lines.push(JSON.parse(line) as Record<string, unknown>);
    },
  });
  const linkStructures: LinkStructureCache = {
    load: () => Promise.reject(thrown),
    peek: () => 'absent',
    answersWithFailure: () => false,
    upstreamCallsFor: () => 0,
    size: 0,
    clear: () => {},
  };
  const protection = createProtection(parsed.env);
  const app = createApp({
    linkStructures,
    logger,
    maxKolIds: 100,
    mode: 'live',
    protection,
    requestObserver: createRequestObserver({ logger, apiKeys: protection.apiKeys }),
    readiness: { breakerState: () => 'closed', upstreamEndpoint: () => 'v1', redisStatus: () => 'disabled' },
    canCallUpstream: () => true,
  });
  const query = async (text: string) => {
    const response = await app.fetch('http://gateway.test/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: text }),
    });
    const body = await response.text();
    await new Promise((resolve) => setImmediate(resolve));
    return { status: response.status, body: JSON.parse(body), text: body };
  };
  return { query, lines, raw };
}

describe('error masking', () => {
  it('shows an unexpected error as "Unexpected error." at its field, logs it once with its detail, and resolves the rest', async () => {
    const { query, lines } = appWithBrokenCache(new TypeError('connection string postgres://admin:hunter2@db is invalid'));
    const { status, body, text } = await query('{ creator(kolId: "1") { kolId linkStructure { fetchedAt } } }');
    expect(status).toBe(200);
    expect(body).toEqual({
      data: { creator: { kolId: '1', linkStructure: null } },
      errors: [
        {
          message: 'Unexpected error.',
          locations: [{ line: 1, column: 31 }],
          path: ['creator', 'linkStructure'],
          extensions: { code: 'INTERNAL_SERVER_ERROR' },
        },
      ],
    });
    expect(text).not.toMatch(/hunter2|TypeError|stack/);
    const errorLines = lines.filter((line) => line['level'] === 'error');
    expect(errorLines).toHaveLength(1);
    expect(errorLines[0]).toMatchObject({
      msg: 'unexpected error',
      path: ['creator', 'linkStructure'],
      error: { name: 'TypeError', message: expect.stringContaining('hunter2') },
    });
    for (const line of lines) expect(typeof line['msg']).toBe('string');
  });

  it('masks something thrown that is not even an Error', async () => {
    const { query, lines } = appWithBrokenCache('a bare string with a secret: hunter2');
    const { body, text } = await query('{ creator(kolId: "1") { linkStructure { fetchedAt } } }');
    expect(body.errors).toEqual([expect.objectContaining({ message: 'Unexpected error.', extensions: { code: 'INTERNAL_SERVER_ERROR' } })]);
    expect(text).not.toContain('hunter2');
    expect(lines.filter((line) => line['level'] === 'error')).toHaveLength(1);
    for (const line of lines) expect(typeof line['msg']).toBe('string');
  });
});
