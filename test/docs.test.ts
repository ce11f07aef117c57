import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { parseEnv } from '../src/env.js';
import { errorCatalog } from '../src/errors.js';

const read = (path: string) => readFile(new URL(`../${path}`, import.meta.url), 'utf8');

/** The README's table rows (lines starting with `|`) under a heading, up to the next heading of the same level. */
function tableRows(readme: string, heading: string): string[] {
  const start = readme.indexOf(`\n${heading}\n`);
  expect(start, `README has a "${heading}" section`).toBeGreaterThan(-1);
  const level = heading.split(' ')[0]!;
  const rest = readme.slice(start + heading.length + 2);
  const end = rest.search(new RegExp(`\\n${level} `));
  return (end === -1 ? rest : rest.slice(0, end)).split('\n').filter((line) => line.startsWith('|'));
}

describe('the README stays true to the code', () => {
  it('documents every configuration variable in a configuration table', async () => {
    const readme = await read('README.md');
    const rows = [...tableRows(readme, '## Configuration'), ...tableRows(readme, '## Running in production')].join('\n');
    const parsed = parseEnv({});
    expect(parsed.ok).toBe(true);
    const variables = parsed.ok ? Object.keys(parsed.env) : [];
    expect(variables.length).toBeGreaterThan(20);
    expect(variables.filter((name) => !rows.includes(`\`${name}\``))).toEqual([]);
  });

  it('lists every error code the gateway returns in the error table', async () => {
    const rows = tableRows(await read('README.md'), '## Errors').join('\n');
    expect(Object.keys(errorCatalog).filter((code) => !rows.includes(`\`${code}\``))).toEqual([]);
  });
});

describe('the Dockerfile (no engine here to build it: its promises are checked as text)', () => {
  it('builds in stages and runs production dependencies only, as the unprivileged node user, on Node 22 or newer', async () => {
    const dockerfile = await read('Dockerfile');
    const instructions = dockerfile.split('\n').filter((line) => line.trim() && !line.trimStart().startsWith('#'));
    const image = /ARG NODE_IMAGE=node:(\d+)/.exec(dockerfile);
    expect(Number(image?.[1])).toBeGreaterThanOrEqual(22);
    const stages = instructions.filter((line) => line.startsWith('FROM '));
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const runtime = instructions.slice(instructions.indexOf(stages.at(-1)!));
    expect(runtime.some((line) => /^RUN npm ci .*--omit=dev/.test(line))).toBe(true);
    expect(runtime.some((line) => /^COPY --from=\w+ \/app\/dist/.test(line))).toBe(true);
    expect(runtime).toContain('USER node');
    expect(runtime.find((line) => line.startsWith('CMD '))).toBe('CMD ["node", "dist/main.js"]');
    expect(dockerfile).toMatch(/HEALTHCHECK [^\n]*\\\n\s+CMD \[[^\n]*\/health/);
  });

  it('sends the build context only what it copies: never a local .env with the token', async () => {
    const ignore = (await read('.dockerignore')).split('\n').filter((line) => line.trim() && !line.startsWith('#'));
    expect(ignore[0]).toBe('*');
    expect(ignore.filter((line) => line.startsWith('!')).sort()).toEqual(['!package-lock.json', '!package.json', '!src', '!tsconfig.build.json', '!tsconfig.json']);
  });
});
