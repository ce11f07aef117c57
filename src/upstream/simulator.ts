import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { endpointSpecs } from './link-struct-endpoints.js';

/**
 * A stand-in for Just One API used in demo mode (no token): a real HTTP server on loopback that
 * answers both link-structure endpoints (v1 and its replacement gw) like the upstream does (HTTP 200,
 * business `code`, numeric keys), with plausible numbers derived from the kolId and platform, so the
 * same question always gives the same answer. The gateway talks to it through its normal client.
 */
export interface SimulatorOptions {
  /** Base latency of an answer; each kolId adds up to the same again, deterministically. */
  latencyMs?: number;
}

export interface RunningSimulator {
  url: string;
  close(): Promise<void>;
}

const gwPlatforms = ['SHORT_VIDEO', 'LIVE_STREAMING', 'PICTURE_TEXT', 'SHORT_DRAMA'];
const linkTypes = ['传播', '种草', '转化', '均衡'];

/** The creator and platform a request asks about, read the way each endpoint takes them; undefined for an unknown path. */
function readQuestion(url: URL): { authorId: string; platform: string } | undefined {
  if (url.pathname === endpointSpecs.v1.path) return { authorId: url.searchParams.get('kolId') ?? '', platform: 'SHORT_VIDEO' };
  if (url.pathname === endpointSpecs.gw.path) {
    return { authorId: url.searchParams.get('oAuthorId') ?? '', platform: url.searchParams.get('platform') ?? 'SHORT_VIDEO' };
  }
  return undefined;
}

/** Short video keeps the kolId alone as its seed, so v1 and gw give the same numbers for it. */
export function simulateLinkStruct(kolId: string, platform = 'SHORT_VIDEO') {
  const random = seededRandom(platform === 'SHORT_VIDEO' ? kolId : `${kolId}:${platform}`);
  const connected = Math.round(50_000 + random() ** 3 * 3_000_000_000);
  const weights = [0.5 + random(), 0.2 + random() * 0.5, 0.1 + random() * 0.3, random() * 0.1];
  const weightSum = weights.reduce((sum, weight) => sum + weight, 0);
  const values = weights.map((weight) => Math.round((connected * weight) / weightSum));
  // Rounding must not make the stages disagree with their total.
  values[0]! += connected - values.reduce((sum, value) => sum + value, 0);
  const bucket = (value: number) => ({
    proportion: value / connected,
    same_industry_median: Math.round(value * (0.4 + random() * 1.4)),
    value,
  });
  return {
    author_link_type: linkTypes[Math.floor(random() * linkTypes.length)]!,
    base_resp: { status_code: 0, status_message: '' },
    link_struct: {
      '1': bucket(values[0]!),
      '2': bucket(values[1]!),
      '3': bucket(values[2]!),
      '4': bucket(values[3]!),
      '5': {
        rank_percent: Math.round(random() * 10_000) / 10_000,
        relative_ratio: Math.round((0.2 + random() * 2) * 10_000) / 10_000,
        value: connected,
      },
    },
  };
}

export function createSimulatorHandler(options: SimulatorOptions = {}) {
  const latencyMs = options.latencyMs ?? 120;
  return (request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? '/', 'http://simulator');
    const reply = (status: number, body: unknown) => {
      response.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
      response.end(JSON.stringify(body));
    };
    const question = readQuestion(url);
    if (!question) {
      reply(404, { code: 404, message: 'Not Found', data: null });
      return;
    }
    const { authorId, platform } = question;
    const delay = latencyMs + Math.floor(seededRandom(`latency:${authorId}`)() * latencyMs);
    setTimeout(() => {
      if (!url.searchParams.get('token')) reply(200, { code: 100, message: 'Invalid or Inactive Token', data: null });
      else if (!/^[0-9]+$/.test(authorId) || !gwPlatforms.includes(platform)) {
        reply(200, { code: 400, message: 'Invalid Parameters', data: null });
      } else reply(200, { code: 0, message: 'success', data: simulateLinkStruct(authorId, platform) });
    }, delay).unref();
  };
}

export async function startSimulator(options: SimulatorOptions = {}): Promise<RunningSimulator> {
  const server: Server = createServer(createSimulatorHandler(options));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** FNV-1a of the seed, then mulberry32: small, fast and the same on every machine. */
function seededRandom(seed: string): () => number {
  let state = 0x811c9dc5;
  for (let index = 0; index < seed.length; index += 1) {
    state ^= seed.charCodeAt(index);
    state = Math.imul(state, 0x01000193);
  }
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
