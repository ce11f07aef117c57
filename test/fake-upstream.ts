import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** The example answer from the upstream's documentation (../shared/seeds), used as the default payload. */
export const documentedPayload = {
  author_link_type: '传播',
  base_resp: { status_code: 0, status_message: '' },
  link_struct: {
    '1': { proportion: 0.6854154336548066, same_industry_median: 7410575, value: 6769084 },
    '2': { proportion: 0.21298982319052925, same_industry_median: 4272385, value: 2103463 },
    '3': { proportion: 0.10159474315466412, same_industry_median: 1826893, value: 1003338 },
    '4': { proportion: 0, same_industry_median: 0, value: 0 },
    '5': { rank_percent: 0.0461, relative_ratio: 0.7881, value: 9875885 },
  },
};

/** The two link-structure endpoints the fake serves, by the paths Just One API documents. */
export const endpointPaths = {
  v1: '/api/douyin-xingtu/get-kol-link-struct/v1',
  gw: '/api/douyin-xingtu/gw/api/data_sp/author_link_struct/v1',
} as const;
export type FakeEndpoint = keyof typeof endpointPaths;

export interface FakeRequest {
  path: string;
  endpoint: FakeEndpoint;
  /** The full request target, as the upstream saw it (holds the token). */
  target: string;
  /** Every query parameter as sent. */
  params: Record<string, string>;
  /** The creator asked about: `kolId` on v1, `oAuthorId` on gw. */
  kolId: string | null;
  acceptCache: string | null;
  /** `platform` as sent to gw (null when not sent, and always on v1). */
  platform: string | null;
  token: string | null;
  /** 1 for the first request for this kolId (on either endpoint), 2 for the next, and so on. */
  nth: number;
  /** The request's headers, as Node parsed them (names in lower case). */
  headers: IncomingHttpHeaders;
}

export type FakeReply =
  | { kind: 'json'; status?: number; body: unknown; delayMs?: number; headers?: Record<string, string> }
  | { kind: 'raw'; status?: number; text: string; delayMs?: number; headers?: Record<string, string> }
  /** A body sent byte for byte as given (e.g. compressed, with its `content-encoding` in `headers`), as application/json. */
  | { kind: 'bytes'; status?: number; bytes: Uint8Array; delayMs?: number; headers?: Record<string, string> }
  /** Never answers (until the test closes the server). */
  | { kind: 'hang' }
  /** Sends the status line, headers and a first chunk of body, then stalls. */
  | { kind: 'stall'; delayMs?: number }
  /** Closes the socket without an HTTP answer. */
  | { kind: 'reset'; delayMs?: number };

export const reply = {
  ok: (data: unknown = documentedPayload, delayMs?: number): FakeReply => ({ kind: 'json', body: { code: 0, message: 'success', data }, delayMs }),
  business: (code: number, message = `business error ${code}`): FakeReply => ({ kind: 'json', body: { code, message, data: null } }),
  http: (status: number, text = 'upstream says no'): FakeReply => ({ kind: 'raw', status, text }),
  raw: (text: string): FakeReply => ({ kind: 'raw', text }),
  hang: (): FakeReply => ({ kind: 'hang' }),
  stall: (): FakeReply => ({ kind: 'stall' }),
  reset: (): FakeReply => ({ kind: 'reset' }),
};

/** A gate a scripted answer can wait at (`await gate.promise`) until the test says when it may go: no timing guessed. */
export function deferred() {
  let release!: () => void;
  const promise = new Promise<void>((resolve) => (release = resolve));
  return { promise, release };
}

export type FakeBehaviour = (request: FakeRequest) => FakeReply | Promise<FakeReply>;

/**
 * A fake Just One API on 127.0.0.1 that each test starts and stops: it records every request to
 * either link-structure endpoint, tracks the most requests in flight at once, and answers as the
 * test scripts it. Any other path gets HTTP 404 (not recorded), as the real API would.
 */
export async function startFakeUpstream(behaviour: FakeBehaviour = () => reply.ok()) {
  let current = behaviour;
  const requests: FakeRequest[] = [];
  let inFlight = 0;
  let peakInFlight = 0;

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://fake-upstream');
    const endpoint = (Object.keys(endpointPaths) as FakeEndpoint[]).find((name) => endpointPaths[name] === url.pathname);
    if (!endpoint) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('no such path');
      return;
    }
    const kolId = url.searchParams.get(endpoint === 'v1' ? 'kolId' : 'oAuthorId');
    const request: FakeRequest = {
      path: url.pathname,
      endpoint,
      target: req.url ?? '',
      params: Object.fromEntries(url.searchParams),
      kolId,
      acceptCache: url.searchParams.get('acceptCache'),
      platform: url.searchParams.get('platform'),
      token: url.searchParams.get('token'),
      nth: requests.filter((earlier) => earlier.kolId === kolId).length + 1,
      headers: req.headers,
    };
    requests.push(request);
    inFlight += 1;
    peakInFlight = Math.max(peakInFlight, inFlight);
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      inFlight -= 1;
    };
    res.on('close', finish);
    void Promise.resolve(current(request)).then((answer) => {
      if (answer.kind === 'hang') return;
      const send = () => {
        if (answer.kind === 'reset') {
          req.socket.destroy();
          return;
        }
        if (answer.kind === 'stall') {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.write('{"code":0,"data":{"link_struct":');
          return;
        }
        const body = answer.kind === 'json' ? JSON.stringify(answer.body) : answer.kind === 'bytes' ? answer.bytes : answer.text;
        res.writeHead(answer.status ?? 200, { 'content-type': answer.kind === 'raw' ? 'text/plain' : 'application/json', ...answer.headers });
        res.end(body, finish);
      };
      if (answer.delayMs) setTimeout(send, answer.delayMs);
      else send();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    /** Requests made for one kolId, or all requests when none is given. */
    calls: (kolId?: string) => (kolId === undefined ? requests.length : requests.filter((r) => r.kolId === kolId).length),
    /** Requests made to one endpoint, optionally for one kolId. */
    callsTo: (endpoint: FakeEndpoint, kolId?: string) =>
      requests.filter((r) => r.endpoint === endpoint && (kolId === undefined || r.kolId === kolId)).length,
    get peakInFlight() {
      return peakInFlight;
    },
    setBehaviour(next: FakeBehaviour) {
      current = next;
    },
    reset() {
      requests.length = 0;
      peakInFlight = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export type FakeUpstream = Awaited<ReturnType<typeof startFakeUpstream>>;
