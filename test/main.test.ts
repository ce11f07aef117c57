import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { reply, startFakeUpstream } from './fake-upstream.js';
import { runMain, startMain } from './main-process.js';

const query = JSON.stringify({
  query: '{ creator(kolId: "6870301416131936264") { kolId linkStructure { authorLinkType buckets { stage value } summary { value } } } }',
});

async function post(url: string, body: string) {
  const response = await fetch(`${url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  return { status: response.status, text: await response.text() };
}

describe('npm start, the command itself', () => {
  it('builds and listens, and a SIGTERM sent to npm stops the gateway (node is not left behind holding the port)', async () => {
    const npm = spawn('npm', ['start', '--silent'], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', HOST: '127.0.0.1', PORT: '0', JUSTONEAPI_TOKEN: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    npm.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => npm.once('exit', (code) => resolve(code)));
    try {
      await vi.waitFor(() => expect(stdout).toMatch(/"msg":"gateway listening"/), { timeout: 60_000, interval: 100 });
      const url = /"url":"(http:[^"]+)\/graphql"/.exec(stdout)![1]!;
      expect((await fetch(`${url}/health`)).status).toBe(200);
      npm.kill('SIGTERM');
      await exited;
      // The gateway itself got the signal: it shut down cleanly, and nothing answers on its port any more.
      await vi.waitFor(() => expect(stdout).toContain('"msg":"stopped","forced":false'), { timeout: 5_000 });
      await expect(fetch(`${url}/health`)).rejects.toThrow();
    } finally {
      if (npm.exitCode === null) npm.kill('SIGKILL');
    }
  }, 90_000);
});

describe('a signal while the gateway is still loading', () => {
  it('stops it cleanly, without listening: as PID 1 in a container an early SIGTERM was dropped and docker stop waited', async () => {
    const run = runMain({ JUSTONEAPI_TOKEN: '' }, ['./test/slow-gateway-load.mjs']);
    try {
      await vi.waitFor(() => expect(run.stderr()).toContain('loading-gateway'), { timeout: 15_000, interval: 20 });
      expect(run.stdout()).toBe('');
      run.child.kill('SIGTERM');
      // Not killed by the signal (exit code null): held until the gateway could shut down, and it exits 0.
      expect(await run.exited).toBe(0);
      expect(run.stdout()).toContain('"msg":"stopped","forced":false');
      expect(run.stdout()).not.toContain('gateway listening');
    } finally {
      if (run.child.exitCode === null) run.child.kill('SIGKILL');
    }
  }, 30_000);
});

describe('npm start with an address it cannot listen on', () => {
  it('says so in one log line and exits 1', async () => {
    const run = runMain({ JUSTONEAPI_TOKEN: '', HOST: 'no-such-host.invalid' });
    expect(await run.exited).toBe(1);
    expect(run.stdout()).toMatch(/"level":"error","msg":"cannot listen","host":"no-such-host.invalid","port":0,"code":"(ENOTFOUND|EAI_AGAIN)"/);
    expect(run.stderr()).not.toContain('Unhandled');
  });

  it('says so on stderr with LOG_LEVEL=silent, which writes no log line', async () => {
    const run = runMain({ JUSTONEAPI_TOKEN: '', HOST: 'no-such-host.invalid', LOG_LEVEL: 'silent' });
    expect(await run.exited).toBe(1);
    expect(run.stdout()).toBe('');
    expect(run.stderr()).toMatch(/^cannot listen on no-such-host\.invalid:0: (ENOTFOUND|EAI_AGAIN)\n$/);
  });
});

describe('the log pipe', () => {
  it('closing (a collector that died, `| head`) does not take the gateway down: it goes on answering', async () => {
    const gateway = await startMain({ JUSTONEAPI_TOKEN: '', CACHE_TTL_SECONDS: '0' });
    try {
      gateway.child.stdout!.destroy();
      for (let index = 0; index < 3; index += 1) {
        const { status } = await post(gateway.url, query);
        expect(status).toBe(200);
      }
      expect(gateway.child.exitCode).toBeNull();
    } finally {
      await gateway.stop('SIGKILL');
    }
  });
});

describe('npm start', () => {
  it('with no token runs in demo mode on the built-in simulator and says so', async () => {
    // No cache, so the second answer comes from the simulator again rather than from memory.
    const gateway = await startMain({ JUSTONEAPI_TOKEN: '', CACHE_TTL_SECONDS: '0' });
    try {
      expect(gateway.stdout()).toContain('DEMO MODE');
      const health = await fetch(`${gateway.url}/health`);
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({ status: 'ok', mode: 'demo', upstreamEndpoint: 'v1' });
      // And in the metrics: its upstream counters count made-up answers, not billed ones.
      expect(await (await fetch(`${gateway.url}/metrics`)).text()).toMatch(/^xingtu_gateway_info\{mode="demo",link_endpoint="auto"\} 1$/m);

      const first = await post(gateway.url, query);
      const second = await post(gateway.url, query);
      const body = JSON.parse(first.text);
      expect(body.errors).toBeUndefined();
      expect(body.data.creator.linkStructure.buckets.map((bucket: { stage: string }) => bucket.stage)).toEqual([
        'AWARE',
        'INTERESTED',
        'LIKE',
        'FOLLOW',
      ]);
      const buckets: Array<{ value: number }> = body.data.creator.linkStructure.buckets;
      // Plausible: the four stages add up to the monthly total.
      expect(buckets.reduce((sum, bucket) => sum + bucket.value, 0)).toBe(body.data.creator.linkStructure.summary.value);
      // Deterministic: the same creator always gets the same numbers (the query leaves out fetchedAt).
      expect(second.text).toBe(first.text);
      // Both answers came from the simulator, not the second from a cache.
      await vi.waitFor(() => expect(gateway.stdout().match(/"msg":"request".*"upstreamCalls":1[,}]/g)).toHaveLength(2));
      // Served by src/http-server.ts: a Host header that makes no URL is a coded 400, not a 500 with a stack trace.
      const port = new URL(gateway.url).port;
      const refused = await new Promise<string>((resolve, reject) => {
        let text = '';
        const socket = connect(Number(port), '127.0.0.1', () => socket.end('GET /health HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n'));
        socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
        socket.on('close', () => resolve(text));
        socket.on('error', reject);
      });
      expect(refused).toMatch(/^HTTP\/1\.1 400 [\s\S]*"code":"BAD_REQUEST"/);
    } finally {
      expect(await gateway.stop()).toBe(0);
    }
  });

  it('refuses to start on bad configuration, naming every bad variable', async () => {
    const run = runMain({ PORT: 'http', UPSTREAM_TIMEOUT_MS: '0', CACHE_TTL_SECONDS: '-5', JUSTONEAPI_BASE_URL: 'not a url' });
    expect(await run.exited).toBe(1);
    for (const variable of ['PORT', 'UPSTREAM_TIMEOUT_MS', 'CACHE_TTL_SECONDS', 'JUSTONEAPI_BASE_URL']) {
      expect(run.stderr()).toContain(variable);
    }
  });

  it('never writes the token, even at debug level with a failing upstream', async () => {
    const token = 'sk-live-3f9a8b7c6d5e4f30';
    const upstream = await startFakeUpstream((request) =>
      request.kolId === '1' ? reply.business(100, `token ${request.token} is invalid`) : reply.reset(),
    );
    const gateway = await startMain({
      JUSTONEAPI_TOKEN: token,
      JUSTONEAPI_BASE_URL: upstream.url,
      LOG_LEVEL: 'debug',
      UPSTREAM_RETRY_BASE_MS: '1',
      // Breaker off: the code 100 would otherwise fail kolId 2's retries fast with the same code.
      BREAKER_COOLDOWN_SECONDS: '0',
    });
    try {
      expect(gateway.stdout()).not.toContain('DEMO MODE');
      const answer = await post(gateway.url, JSON.stringify({ query: '{ a: creator(kolId: "1") { linkStructure { fetchedAt } } b: creator(kolId: "2") { linkStructure { fetchedAt } } }' }));
      const body = JSON.parse(answer.text);
      expect(body.errors.map((error: { extensions: { code: string } }) => error.extensions.code).sort()).toEqual([
        'UPSTREAM_AUTH_FAILED',
        'UPSTREAM_UNAVAILABLE',
      ]);
      expect(upstream.requests.every((request) => request.token === token)).toBe(true);
      expect(answer.text).not.toContain(token);
      expect(gateway.stdout()).toContain('upstream call failed');
      expect(gateway.stdout()).toContain('[REDACTED]');
    } finally {
      await gateway.stop();
      await upstream.close();
    }
    expect(gateway.stdout()).not.toContain(token);
    expect(gateway.stderr()).not.toContain(token);
  });
});
