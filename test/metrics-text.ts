import type { MetricSources } from '../src/metrics.js';

/** What a gateway at rest would report: for metrics built without one. */
export const idleMetricSources: MetricSources = {
  upstreamInFlight: () => 0,
  upstreamQueued: () => 0,
  upstreamRateLimitPauseMs: () => 0,
  cacheEntries: () => 0,
  breakerState: () => 'closed',
  upstreamEndpoint: () => 'v1',
  redisStatus: () => 'disabled',
};

/** Reads Prometheus' text exposition format, for assertions on what a scraper would see. */
export interface MetricFamily {
  name: string;
  type: string | undefined;
  help: string | undefined;
}

export function metricFamilies(text: string): MetricFamily[] {
  const families = new Map<string, MetricFamily>();
  for (const line of text.split('\n')) {
    const match = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (!match) continue;
    const [, kind, name, rest] = match as unknown as [string, 'HELP' | 'TYPE', string, string];
    const family = families.get(name) ?? { name, type: undefined, help: undefined };
    if (kind === 'HELP') family.help = rest;
    else family.type = rest;
    families.set(name, family);
  }
  return [...families.values()];
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Every sample line, in order. */
export function samples(text: string): Sample[] {
  const found: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) continue;
    const labels = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((pair) => [pair[1]!, pair[2]!]));
    found.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return found;
}

/** The value of the sample with exactly these labels, or undefined when there is none. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels);
  return samples(text).find(
    (found) => found.name === name && wanted.length === Object.keys(found.labels).length && wanted.every(([key, value]) => found.labels[key] === value),
  )?.value;
}

/** GET /metrics from an app, as a scraper would. */
export async function scrapeMetrics(app: { fetch: (url: string) => Promise<Response> | Response }): Promise<string> {
  const response = await app.fetch('http://gateway.test/metrics');
  if (response.status !== 200) throw new Error(`/metrics answered ${response.status}`);
  return response.text();
}
