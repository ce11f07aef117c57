import { readFile } from 'node:fs/promises';
import { connect, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { parseEnv } from '../src/env.js';
import { createGateway } from '../src/gateway.js';
import { createHttpServer } from '../src/http-server.js';
import { createLogger } from '../src/logger.js';
import { startSimulator } from '../src/upstream/simulator.js';
import { reply, startFakeUpstream } from './fake-upstream.js';
import { createTestGateway } from './gateway.js';
import { samples, scrapeMetrics, type Sample } from './metrics-text.js';
import { startRedisServer } from './redis-server.js';

/*
 * ops/prometheus-alerts.yml and ops/grafana-dashboard.json name metrics, labels and label values as strings that
 * nothing compiles: a renamed metric or a misspelt value makes an alert that never fires and a panel that shows
 * "No data". These tests read every query in both files and check it against what the gateway really exports.
 */

const read = (path: string) => readFile(new URL(`../${path}`, import.meta.url), 'utf8');

/** Labels Prometheus adds to every scraped series: not in /metrics, usable everywhere. */
const targetLabels = new Set(['job', 'instance']);
/** Labels whose values are a fixed set the gateway produces: a value used in a matcher must be one of them. */
const enumLabels = new Set(['outcome', 'upstream_code', 'endpoint', 'state', 'status', 'mode', 'link_endpoint', 'code', 'event', 'reason', 'cause']);

interface Matcher {
  label: string;
  op: '=' | '!=' | '=~' | '!~';
  value: string;
}
interface Selector {
  metric: string;
  matchers: Matcher[];
}
interface QueryParts {
  selectors: Selector[];
  /** Labels named in by / without / on / ignoring / group_left / group_right. */
  groupingLabels: string[];
}

const labelListKeywords = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
const binaryKeywords = new Set(['and', 'or', 'unless', 'offset', 'bool', 'atan2']);
/** Aggregations may put `by (...)` between their name and their parenthesis. */
const aggregations = new Set(['sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk', 'topk', 'quantile']);
// Strings, ranges ([5m], [$__rate_interval]) and matcher blocks are single tokens; anything unexpected stops the parse.
const tokenPattern = /\s+|"(?:[^"\\]|\\.)*"|\[[^\]]*\]|\{[^}]*\}|[A-Za-z_:][\w:]*|\d[\w.]*|==|!=|>=|<=|[-+*/%^(),<>]/y;
const matcherPattern = /\s*([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)/y;

/**
 * The metric selectors and grouping labels of a PromQL expression. Enough PromQL for these files (no
 * `{__name__=...}` selectors, no subqueries); what it cannot read fails the test rather than being skipped.
 */
function queryParts(expr: string): QueryParts {
  const tokens: string[] = [];
  tokenPattern.lastIndex = 0;
  while (tokenPattern.lastIndex < expr.length) {
    const at = tokenPattern.lastIndex;
    const match = tokenPattern.exec(expr);
    if (!match) throw new Error(`cannot read PromQL at "${expr.slice(at, at + 20)}" in: ${expr}`);
    if (match[0].trim()) tokens.push(match[0]);
  }
  const parts: QueryParts = { selectors: [], groupingLabels: [] };
  for (let index = 0; index < tokens.length; index += 1) {
    const token = tokens[index]!;
    const next = tokens[index + 1];
    if (token.startsWith('{')) throw new Error(`a selector without a metric name is not supported: ${expr}`);
    if (!/^[A-Za-z_:]/.test(token) || binaryKeywords.has(token)) continue;
    if (labelListKeywords.has(token)) {
      if (next !== '(') throw new Error(`"${token}" without a label list in: ${expr}`);
      index += 2;
      for (; tokens[index] !== ')'; index += 1) {
        if (tokens[index] === undefined) throw new Error(`unclosed label list in: ${expr}`);
        if (tokens[index] !== ',') parts.groupingLabels.push(tokens[index]!);
      }
      continue;
    }
    if (next === '(' || aggregations.has(token)) continue; // a function or an aggregation
    parts.selectors.push({ metric: token, matchers: next?.startsWith('{') ? matchersOf(next, expr) : [] });
    if (next?.startsWith('{')) index += 1;
  }
  return parts;
}

function matchersOf(block: string, expr: string): Matcher[] {
  const inner = block.slice(1, -1);
  const matchers: Matcher[] = [];
  matcherPattern.lastIndex = 0;
  while (matcherPattern.lastIndex < inner.trimEnd().length) {
    const match = matcherPattern.exec(inner);
    if (!match) throw new Error(`cannot read the matchers ${block} in: ${expr}`);
    matchers.push({ label: match[1]!, op: match[2] as Matcher['op'], value: match[3]! });
  }
  return matchers;
}

/** What a set of scrapes shows: each sample name, with every label it has and every value each label takes. */
type Exported = Map<string, Map<string, Set<string>>>;

function exported(scrapes: string[]): Exported {
  const metrics: Exported = new Map();
  for (const { name, labels } of scrapes.flatMap((text): Sample[] => samples(text))) {
    const metric = metrics.get(name) ?? new Map<string, Set<string>>();
    metrics.set(name, metric);
    for (const [label, value] of Object.entries(labels)) metric.set(label, (metric.get(label) ?? new Set()).add(value));
  }
  return metrics;
}

/** The values a matcher compares with: its value, or each branch of a regex that is only alternatives (`a|b`). */
function comparedValues({ op, value }: Matcher): string[] {
  if (op === '=' || op === '!=') return [value];
  return /^[\w-]+(?:\|[\w-]+)*$/.test(value) ? value.split('|') : [];
}

/** Every problem with one query against what the gateway exports, each naming where it is. */
function problemsIn(where: string, expr: string, metrics: Exported): string[] {
  let parts: QueryParts;
  try {
    parts = queryParts(expr);
  } catch (error) {
    return [`${where}: ${(error as Error).message}`];
  }
  const problems: string[] = [];
  if (parts.selectors.length === 0) problems.push(`${where}: no metric in ${expr}`);
  const labelsInQuery = new Set(targetLabels);
  for (const { metric, matchers } of parts.selectors) {
    const labels = metrics.get(metric);
    if (!labels) {
      problems.push(`${where}: ${metric} is not in /metrics (a histogram is queried as its _bucket, _sum or _count)`);
      continue;
    }
    for (const label of labels.keys()) labelsInQuery.add(label);
    for (const matcher of matchers) {
      if (targetLabels.has(matcher.label)) continue;
      const values = labels.get(matcher.label);
      if (!values) {
        problems.push(`${where}: ${metric} has no label ${matcher.label} (it has: ${[...labels.keys()].join(', ') || 'none'})`);
        continue;
      }
      if (!enumLabels.has(matcher.label)) continue;
      for (const value of comparedValues(matcher)) {
        if (values.has(value)) continue;
        problems.push(`${where}: ${metric}{${matcher.label}${matcher.op}"${value}"}: the gateway exports ${matcher.label} ${[...values].join(', ')}`);
      }
    }
  }
  for (const label of parts.groupingLabels) {
    if (!labelsInQuery.has(label)) problems.push(`${where}: groups by ${label}, which none of its metrics has`);
  }
  return problems;
}

interface AlertRule {
  alert?: unknown;
  expr?: unknown;
  for?: unknown;
  labels?: { severity?: unknown };
  annotations?: { summary?: unknown; description?: unknown };
}

interface GrafanaPanel {
  id?: number;
  type?: string;
  title?: string;
  gridPos?: { x: number; y: number; w: number; h: number };
  datasource?: { uid?: string };
  targets?: Array<{ refId?: string; expr?: string; datasource?: { uid?: string } }>;
  panels?: GrafanaPanel[];
}

interface GrafanaDashboard {
  schemaVersion?: number;
  uid?: string;
  title?: string;
  panels?: GrafanaPanel[];
  templating?: { list?: Array<{ name: string; type: string; definition?: string; query?: unknown }> };
}

async function alertRules(): Promise<AlertRule[]> {
  const file = parseYaml(await read('ops/prometheus-alerts.yml')) as { groups?: Array<{ name?: unknown; rules?: AlertRule[] }> };
  return (file.groups ?? []).flatMap((group) => group.rules ?? []);
}

async function dashboard(): Promise<GrafanaDashboard> {
  return JSON.parse(await read('ops/grafana-dashboard.json')) as GrafanaDashboard;
}

/** Panels, with those inside collapsed rows. */
const allPanels = (panels: GrafanaPanel[] = []): GrafanaPanel[] => panels.flatMap((panel) => [panel, ...allPanels(panel.panels)]);

describe('ops/prometheus-alerts.yml', () => {
  it('is a Prometheus rule file: every rule has a name, an expression, a duration, a severity, a summary and a description', async () => {
    const file = parseYaml(await read('ops/prometheus-alerts.yml')) as { groups?: Array<{ name?: unknown; rules?: unknown[] }> };
    expect(file.groups?.length).toBeGreaterThan(0);
    for (const group of file.groups ?? []) {
      expect(typeof group.name).toBe('string');
      expect(group.rules?.length).toBeGreaterThan(0);
    }
    const rules = await alertRules();
    for (const rule of rules) {
      const name = String(rule.alert);
      expect(rule.alert, name).toMatch(/^Xingtu[A-Z]\w+$/);
      expect(typeof rule.expr, name).toBe('string');
      expect(rule.for, name).toMatch(/^\d+[smh]$/);
      expect(rule.labels?.severity, name).toMatch(/^(critical|warning|info)$/);
      expect(typeof rule.annotations?.summary, name).toBe('string');
      // What it means and what to do: more than a line.
      expect(String(rule.annotations?.description).length, name).toBeGreaterThan(150);
    }
    const names = rules.map((rule) => rule.alert);
    expect(new Set(names).size).toBe(names.length);
  });

  it('is the list of alerts the README gives, with the same severities', async () => {
    const readme = await read('README.md');
    const start = readme.indexOf('\n### Alerts and dashboard\n');
    expect(start).toBeGreaterThan(-1);
    const section = readme.slice(start, readme.indexOf('\n### ', start + 1));
    const documented = [...section.matchAll(/^\| `(Xingtu\w+)` \| (\w+) \|/gm)].map((row) => `${row[1]} ${row[2]}`);
    const rules = (await alertRules()).map((rule) => `${String(rule.alert)} ${String(rule.labels?.severity)}`);
    expect(documented.sort()).toEqual(rules.sort());
  });
});

describe('ops/grafana-dashboard.json', () => {
  it('is an importable dashboard: a datasource variable every query uses, unique panel ids, panels inside the 24-column grid', async () => {
    const board = await dashboard();
    expect(board.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(board.uid).toBeTruthy();
    const variables = board.templating?.list ?? [];
    const datasource = variables.find((variable) => variable.type === 'datasource');
    expect(datasource?.query).toBe('prometheus');
    const panels = allPanels(board.panels);
    const ids = panels.map((panel) => panel.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const panel of panels) {
      expect(panel.gridPos, panel.title).toBeDefined();
      expect(panel.gridPos!.x + panel.gridPos!.w, panel.title).toBeLessThanOrEqual(24);
      if (panel.type === 'row') continue;
      expect(panel.datasource?.uid, panel.title).toBe(`\${${datasource?.name}}`);
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      for (const target of panel.targets ?? []) {
        expect(target.expr, panel.title).toBeTruthy();
        expect(target.datasource?.uid, panel.title).toBe(`\${${datasource?.name}}`);
      }
    }
  });
});

describe('every metric, label and label value the alerts and the dashboard use is one the gateway exports', () => {
  let scrapes: string[] = [];
  const cleanups: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    // A live replica with Redis (so the shared level's series exist), after the operation outcomes a scrape only
    // shows once they happen: a success, a partial answer (one creator's upstream failed), an error, a cancel.
    const redis = await startRedisServer();
    cleanups.push(() => redis.close());
    // kolId 500 fails with business code 500; kolId 2 answers after half a second, long enough to hang up on.
    const upstream = await startFakeUpstream((request) =>
      request.kolId === '500' ? reply.business(500) : reply.ok(undefined, request.kolId === '2' ? 500 : 0),
    );
    cleanups.push(() => upstream.close());
    const live = createTestGateway(upstream.url, { REDIS_URL: redis.url, UPSTREAM_RETRIES: '0' });
    cleanups.unshift(() => live.close());
    expect((await live.query('{ creator(kolId: "1") { linkStructure { fetchedAt } } }')).body.errors).toBeUndefined();
    expect((await live.query('{ creator(kolId: "500") { linkStructure { fetchedAt } } }')).body.errors?.[0]?.extensions?.['code']).toBe('UPSTREAM_INTERNAL_ERROR');
    expect((await live.query('{ creator(kolId: ')).status).toBe(400);
    // Cancelled: a client that hangs up before its answer, over a real socket as in test/http-server.test.ts.
    const { server } = createHttpServer(live.app, { logRefusal: live.logRefusal });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.unshift(async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    });
    const body = JSON.stringify({ query: '{ creator(kolId: "2") { linkStructure { fetchedAt } } }' });
    const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
    socket.write(`POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
    while (upstream.calls('2') === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    socket.destroy();
    while (!(await scrapeMetrics(live.app)).includes('outcome="cancelled"')) await new Promise((resolve) => setTimeout(resolve, 20));

    // A replica in demo mode: the one source of xingtu_gateway_info{mode="demo"}.
    const simulator = await startSimulator();
    cleanups.push(() => simulator.close());
    const parsed = parseEnv({ LOG_LEVEL: 'silent' });
    if (!parsed.ok) throw new Error(parsed.problems.join('\n'));
    const demo = createGateway(parsed.env, {
      logger: createLogger({ level: 'silent', secrets: [], write: () => undefined }),
      mode: 'demo',
      upstream: { baseUrl: simulator.url, token: 'demo' },
    });
    cleanups.unshift(() => demo.close());

    scrapes = [await scrapeMetrics(live.app), await scrapeMetrics(demo.app)];
  });

  afterAll(async () => {
    for (const cleanup of cleanups) await cleanup();
  });

  it('the scrapes show the series the checks rely on', () => {
    const metrics = exported(scrapes);
    expect(metrics.get('xingtu_gateway_info')?.get('mode')).toEqual(new Set(['live', 'demo']));
    expect(metrics.get('xingtu_graphql_operations_total')?.get('outcome')).toEqual(new Set(['success', 'partial', 'error', 'cancelled']));
    expect(metrics.get('xingtu_redis_events_total')?.get('event')?.size).toBeGreaterThan(0);
  });

  it('in every alert rule', async () => {
    const metrics = exported(scrapes);
    const rules = await alertRules();
    expect(rules.length).toBeGreaterThan(0);
    expect(rules.flatMap((rule) => problemsIn(`alert ${String(rule.alert)}`, String(rule.expr), metrics))).toEqual([]);
  });

  it('in every dashboard query and variable', async () => {
    const metrics = exported(scrapes);
    const board = await dashboard();
    const queries = allPanels(board.panels).flatMap((panel) =>
      (panel.targets ?? []).map((target) => ({ where: `panel "${panel.title}" ${target.refId}`, expr: target.expr ?? '' })),
    );
    expect(queries.length).toBeGreaterThan(10);
    for (const variable of board.templating?.list ?? []) {
      if (variable.type !== 'query') continue;
      // label_values(selector, label): the label must be one the selector's metric has.
      const labelValues = /^label_values\((.+),\s*(\w+)\)$/.exec(variable.definition ?? '');
      expect(labelValues, `variable ${variable.name}`).not.toBeNull();
      queries.push({ where: `variable ${variable.name}`, expr: `group by (${labelValues![2]}) (${labelValues![1]})` });
    }
    expect(queries.flatMap(({ where, expr }) => problemsIn(where, expr, metrics))).toEqual([]);
  });

  it('would catch a misspelt metric, label or value', () => {
    const metrics = exported(scrapes);
    expect(problemsIn('t', 'sum(rate(xingtu_upstream_request_total[5m]))', metrics)).toHaveLength(1);
    expect(problemsIn('t', 'xingtu_upstream_request_duration_seconds', metrics)).toHaveLength(1);
    expect(problemsIn('t', 'xingtu_upstream_requests_total{upstream_cod="303"}', metrics)).toHaveLength(1);
    expect(problemsIn('t', 'xingtu_upstream_requests_total{outcome!="OK"}', metrics)).toHaveLength(1);
    expect(problemsIn('t', 'xingtu_graphql_operations_total{outcome=~"error|partal"}', metrics)).toHaveLength(1);
    expect(problemsIn('t', 'sum by (endpont) (xingtu_upstream_endpoint)', metrics)).toHaveLength(1);
    expect(problemsIn('t', 'max by (job) (xingtu_upstream_breaker_state{state="open", instance=~".+"})', metrics)).toEqual([]);
  });
});
