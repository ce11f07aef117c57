import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A stand-in for Just One API used in demo mode (no token): a real HTTP server on loopback that
 * answers the link-structure endpoint like the upstream does (HTTP 200, business `code`,
 * numeric keys), with plausible numbers derived from the kolId, so the same kolId always
 * gives the same answer. The gateway talks to it through its normal client.
 */
export interface SimulatorOptions {
  /** Base latency of an answer; each kolId adds up to the same again, deterministically. */
  latencyMs?: number;
}

export interface RunningSimulator {
  url: string;
  close(): Promise<void>;
}

const linkStructPath = '/api/douyin-xingtu/get-kol-link-struct/v1';
const linkTypes = ['传播', '种草', '转化', '均衡'];

export function simulateLinkStruct(kolId: string) {
  const random = seededRandom(kolId);
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
    if (url.pathname !== linkStructPath) {
      reply(404, { code: 404, message: 'Not Found', data: null });
      return;
    }
    const kolId = url.searchParams.get('kolId') ?? '';
    const delay = latencyMs + Math.floor(seededRandom(`latency:${kolId}`)() * latencyMs);
    setTimeout(() => {
      if (!url.searchParams.get('token')) reply(200, { code: 100, message: 'Invalid or Inactive Token', data: null });
      else if (!/^[0-9]+$/.test(kolId)) reply(200, { code: 400, message: 'Invalid Parameters', data: null });
      else reply(200, { code: 0, message: 'success', data: simulateLinkStruct(kolId) });
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
