import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { configurationVariables, parseEnv } from '../src/env.js';
import { errorCatalog } from '../src/errors.js';
import { createMetrics } from '../src/metrics.js';
import { idleMetricSources } from './metrics-text.js';

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

/** A table row's cells, without the outer pipes (a `\\|` inside a cell is not a separator). */
const cells = (row: string) =>
  row
    .replace(/^\|/, '')
    .replace(/\|$/, '')
    .split(/(?<!\\)\|/)
    .map((cell) => cell.trim());

describe('the README stays true to the code', () => {
  it('documents every configuration variable in a configuration table', async () => {
    const readme = await read('README.md');
    const rows = [...tableRows(readme, '## Configuration'), ...tableRows(readme, '## Running in production')].join('\n');
    const variables = configurationVariables;
    expect(variables.length).toBeGreaterThan(20);
    expect(variables.filter((name) => !rows.includes(`\`${name}\``))).toEqual([]);
  });

  it('gives each configuration variable the default the code has, and documents no variable the code lacks', async () => {
    const readme = await read('README.md');
    const rows = [...tableRows(readme, '## Configuration'), ...tableRows(readme, '## Running in production')].map(cells);
    const parsed = parseEnv({});
    const env: Record<string, unknown> = parsed.ok ? parsed.env : {};
    const documented = new Map<string, string>();
    for (const [names = '', defaults = ''] of rows) {
      // `PORT` / `HOST` | `4000` / `0.0.0.0`: one default per name, in order.
      const nameList = [...names.matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((match) => match[1]!);
      const defaultList = defaults.split(' / ').map((text) => text.trim().replace(/^`(.*)`$/, '$1'));
      if (nameList.length === 0 || nameList.length !== defaultList.length) continue;
      nameList.forEach((name, index) => documented.set(name, defaultList[index]!));
    }
    // Each in a row of its own kind (name, default, meaning), and none the code does not read.
    expect([...documented.keys()].sort()).toEqual([...configurationVariables].sort());
    // Unset: no value, or an empty list.
    const asWritten = (value: unknown) => (value === undefined || (Array.isArray(value) && value.length === 0) ? 'unset' : String(value));
    expect(Object.fromEntries([...documented.keys()].map((name) => [name, documented.get(name)]))).toEqual(
      Object.fromEntries([...documented.keys()].map((name) => [name, asWritten(env[name])])),
    );
  });

  it('lists every error code the gateway returns in the error table', async () => {
    const rows = tableRows(await read('README.md'), '## Errors').join('\n');
    expect(Object.keys(errorCatalog).filter((code) => !rows.includes(`\`${code}\``))).toEqual([]);
  });

  it('says in the error table whether each code is retryable as the catalog does', async () => {
    const rows = tableRows(await read('README.md'), '## Errors').map(cells).slice(2);
    const said: string[] = [];
    const meant: string[] = [];
    for (const [cause = '', codes = '', retryable = ''] of rows) {
      for (const [, code] of codes.matchAll(/`([A-Z_]+)`/g)) {
        said.push(`${code}: ${/^(yes|no|—)/.exec(retryable)?.[1] ?? retryable} (${cause.slice(0, 40)}…)`);
        const entry = (errorCatalog as Record<string, { retryable: boolean }>)[code!];
        meant.push(`${code}: ${entry ? (entry.retryable ? 'yes' : 'no') : code === 'INTERNAL_SERVER_ERROR' ? '—' : 'not in the catalog'} (${cause.slice(0, 40)}…)`);
      }
    }
    expect(said.length).toBeGreaterThan(20);
    expect(said).toEqual(meant);
  });
});

describe('the README’s metrics table', () => {
  it('names every metric the gateway defines, with its type and labels, and none it does not', async () => {
    const metrics = createMetrics(idleMetricSources);
    const defined = metrics.registry
      .getMetricsAsArray()
      .filter((metric) => metric.name.startsWith('xingtu_'))
      .map((metric) => {
        const { type, labelNames = [] } = metric as unknown as { type: string; labelNames?: string[] };
        return `${metric.name} ${type} [${[...labelNames].sort().join(', ')}]`;
      });
    const rows = tableRows(await read('README.md'), '### Metrics')
      .map(cells)
      .filter(([name = '']) => name.startsWith('`xingtu_'));
    const documented = rows.map(([name = '', type = '', labels = '']) => {
      // A label is named in backticks before its values' parenthesis, or alone: `endpoint` (`v1`, `gw`), `outcome`.
      const names = [...labels.replace(/\([^()]*(\([^()]*\)[^()]*)*\)/g, '').matchAll(/`(\w+)`/g)].map((match) => match[1]!);
      return `${name.replaceAll('`', '')} ${type} [${names.sort().join(', ')}]`;
    });
    expect(defined.length).toBeGreaterThan(20);
    expect(documented.sort()).toEqual(defined.sort());
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
