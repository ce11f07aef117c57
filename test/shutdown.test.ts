import { describe, expect, it } from 'vitest';
import { reply, startFakeUpstream } from './fake-upstream.js';
import { startMain } from './main-process.js';

const query = JSON.stringify({ query: '{ creator(kolId: "6870301416131936264") { linkStructure { summary { value } } } }' });

async function waitFor(condition: () => boolean, timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('SIGTERM', () => {
  it('stops accepting, lets the request waiting on a slow upstream finish, closes the pool and exits 0', async () => {
    const upstream = await startFakeUpstream(() => reply.ok(undefined, 1_000));
    const gateway = await startMain({ JUSTONEAPI_TOKEN: 'tok_shutdown_test', JUSTONEAPI_BASE_URL: upstream.url, UPSTREAM_RETRIES: '0' });
    try {
      expect(gateway.stdout()).toContain('OPEN GATEWAY');
      const inFlight = fetch(`${gateway.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: query });
      await waitFor(() => upstream.calls() === 1);

      gateway.child.kill('SIGTERM');
      await waitFor(() => gateway.stdout().includes('shutting down'));
      // New connections are refused while the old request is still waiting on the upstream.
      await expect(fetch(`${gateway.url}/health`)).rejects.toThrow();

      const response = await inFlight;
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({ data: { creator: { linkStructure: { summary: { value: 9875885 } } } } });
      expect(await gateway.stop()).toBe(0);
      expect(upstream.calls()).toBe(1);
      expect(gateway.stdout()).toContain('"msg":"stopped","forced":false');
    } finally {
      await gateway.stop('SIGKILL');
      await upstream.close();
    }
  });

  it('gives up on requests still running after SHUTDOWN_TIMEOUT_MS and exits 1', async () => {
    const upstream = await startFakeUpstream(() => reply.hang());
    const gateway = await startMain({
      JUSTONEAPI_TOKEN: 'tok_shutdown_test',
      JUSTONEAPI_BASE_URL: upstream.url,
      UPSTREAM_RETRIES: '0',
      SHUTDOWN_TIMEOUT_MS: '300',
    });
    try {
      const inFlight = fetch(`${gateway.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: query }).then(
        () => 'answered',
        () => 'cut off',
      );
      await waitFor(() => upstream.calls() === 1);
      const started = Date.now();
      expect(await gateway.stop('SIGTERM')).toBe(1);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(await inFlight).toBe('cut off');
      expect(gateway.stdout()).toContain('shutdown timeout');
    } finally {
      await gateway.stop('SIGKILL');
      await upstream.close();
    }
  });
});
