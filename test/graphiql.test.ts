import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import * as bundled from '@graphql-yoga/render-graphiql/graphiql';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.js';
import { createGraphiQLAssets } from '../src/graphiql-assets.js';
import { createTestGateway, type TestGateway } from './gateway.js';

const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const expectedAssets: Record<string, RegExp> = {
  'graphiql.js': /^text\/javascript\b/,
  'graphiql.css': /^text\/css\b/,
  'editor.worker.js': /^text\/javascript\b/,
  'json.worker.js': /^text\/javascript\b/,
  'graphql.worker.js': /^text\/javascript\b/,
  'favicon.ico': /^image\/x-icon$/,
};

async function fetchGraphiQLPage(gateway: TestGateway): Promise<string> {
  const response = await gateway.app.fetch('http://gateway.test/graphql', { headers: { accept: 'text/html' } });
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/html/);
  return response.text();
}

describe('GraphiQL page and its assets, in-process', () => {
  let upstream: FakeUpstream;
  let gateway: TestGateway;
  let html: string;
  /** Every /graphiql-assets/ path the page mentions, keyed by file name. */
  let assetPaths: Map<string, string>;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    gateway = createTestGateway(upstream.url);
    html = await fetchGraphiQLPage(gateway);
    assetPaths = new Map([...html.matchAll(/\/graphiql-assets\/[0-9a-f]+\/[\w.-]+/g)].map(([path]) => [path.split('/').pop() ?? '', path]));
  });
  afterAll(async () => {
    await gateway?.close();
    await upstream?.close();
  });

  it('loads scripts, styles and icon from its own origin only', () => {
    const references = [...html.matchAll(/<(?:script|link)\b[^>]*\b(?:src|href)="([^"]*)"/g)].map(([, url]) => url);
    expect(references.length).toBeGreaterThanOrEqual(3);
    for (const url of references) expect(url, `<script src>/<link href> ${url}`).toMatch(/^\/graphiql-assets\//);
    expect(html).not.toMatch(/\b(?:src|href)="(?:https?:)?\/\//);
  });

  it('names the bundle, the three Monaco workers and the favicon under one content hash', () => {
    expect([...assetPaths.keys()].sort()).toEqual(Object.keys(expectedAssets).sort());
    expect(new Set([...assetPaths.values()].map((path) => path.split('/')[2])).size).toBe(1);
  });

  it.each(Object.entries(expectedAssets))('serves %s with its content type and immutable caching', async (name, contentType) => {
    const path = assetPaths.get(name);
    expect(path, `${name} referenced by the page`).toBeDefined();
    const response = await gateway.app.fetch(`http://gateway.test${path}`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(contentType);
    expect(response.headers.get('cache-control')).toContain('immutable');
    expect(response.headers.get('cache-control')).toContain('max-age=31536000');
    expect(response.headers.get('content-encoding')).toBeNull();
    expect((await response.arrayBuffer()).byteLength).toBeGreaterThan(0);
  });

  it('serves the bundle byte for byte, gzipped when the browser accepts gzip', async () => {
    const path = assetPaths.get('graphiql.js');
    const plain = await gateway.app.fetch(`http://gateway.test${path}`);
    expect(Buffer.from(await plain.arrayBuffer()).toString()).toBe(bundled.js);

    const gzipped = await gateway.app.fetch(`http://gateway.test${path}`, { headers: { 'accept-encoding': 'gzip, deflate, br' } });
    expect(gzipped.status).toBe(200);
    expect(gzipped.headers.get('content-encoding')).toBe('gzip');
    expect(gzipped.headers.get('vary')).toMatch(/accept-encoding/i);
    expect(gzipped.headers.get('cache-control')).toContain('immutable');
    const body = Buffer.from(await gzipped.arrayBuffer());
    expect(Number(gzipped.headers.get('content-length'))).toBe(body.length);
    expect(body.length).toBeLessThan(bundled.js.length / 2);
    expect(gunzipSync(body).toString()).toBe(bundled.js);
  });

  it('answers 404 for an unknown hash or file name', async () => {
    const path = assetPaths.get('graphiql.js') ?? '';
    const staleHash = path.replace(/\/graphiql-assets\/[0-9a-f]+\//, '/graphiql-assets/000000000000/');
    const unknownName = path.replace(/graphiql\.js$/, 'secrets.js');
    for (const url of [staleHash, unknownName, '/graphiql-assets/', '/graphiql-assets/graphiql.js']) {
      const response = await gateway.app.fetch(`http://gateway.test${url}`);
      expect(response.status, url).toBe(404);
    }
  });
});

describe('the asset route on every other request', () => {
  it('answers nothing and hands Yoga no promise: the hook is synchronous off its path', () => {
    const { plugin } = createGraphiQLAssets();
    const payload = { url: new URL('http://gateway.test/graphql'), request: new Request('http://gateway.test/graphql', { method: 'POST' }) };
    // An async hook returns a promise even when it does nothing, and Yoga waits for it on every request.
    expect(plugin.onRequest!(payload as unknown as Parameters<NonNullable<typeof plugin.onRequest>>[0])).toBeUndefined();
  });
});

describe('GraphiQL in a real browser, over loopback', () => {
  const kolId = '6870301416131936264';
  const query = `query CreatorSummary { creator(kolId: "${kolId}") { kolId linkStructure { summary { value } } } }`;
  let upstream: FakeUpstream | undefined;
  let gateway: TestGateway | undefined;
  let server: Server | undefined;
  let browser: Browser | undefined;
  let origin = '';

  async function launchChromium(): Promise<Browser> {
    // A failure, not a skip: a CI image without Chromium would otherwise pass without ever opening GraphiQL.
    if (!existsSync(chromiumPath)) {
      throw new Error(
        `Chromium not found at ${chromiumPath}: install it (apt-get install -y chromium) or point CHROMIUM_PATH at a Chromium binary.`,
      );
    }
    return chromium.launch({
      executablePath: chromiumPath,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        // Nothing but loopback resolves, so a stray CDN reference fails instead of reaching the internet.
        '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
      ],
    });
  }

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    gateway = createTestGateway(upstream.url);
    const listening = createServer(gateway.app);
    server = listening;
    await new Promise<void>((resolve) => listening.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(listening.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await browser?.close();
    if (server) {
      const closing = server;
      closing.closeAllConnections();
      await new Promise<void>((resolve) => closing.close(() => resolve()));
    }
    await gateway?.close();
    await upstream?.close();
  });

  it('renders without leaving the gateway, runs a query and shows the upstream value', { timeout: 60_000 }, async () => {
    if (!upstream) throw new Error('fake upstream not started');
    browser = await launchChromium();
    const context = await browser.newContext();
    try {
      const elsewhere: string[] = [];
      const answeredFromElsewhere: string[] = [];
      const pageErrors: string[] = [];
      const workers = new Set<string>();
      await context.route('**/*', async (route) => {
        const url = route.request().url();
        if (new URL(url).origin === origin) return route.continue();
        elsewhere.push(url);
        return route.abort('blockedbyclient');
      });
      context.on('response', (response) => {
        if (new URL(response.url()).hostname !== '127.0.0.1') answeredFromElsewhere.push(response.url());
      });
      const page = await context.newPage();
      page.on('pageerror', (error) => pageErrors.push(error.message));
      page.on('worker', (worker) => workers.add(new URL(worker.url()).pathname.split('/').pop() ?? ''));
      page.setDefaultTimeout(30_000);

      await page.goto(`${origin}/graphql`);
      const editor = page.locator('.graphiql-query-editor .monaco-editor');
      // The default query appears once Monaco is up; replacing it before then would be overwritten.
      await expect.poll(() => editor.locator('.view-lines').textContent(), { timeout: 30_000 }).toContain('CreatorLinkStructure');

      // Yoga's GraphiQL reads no ?query= parameter, so edit like a user. Typing key by key would trip
      // Monaco's auto-closing brackets, and inserting over a selection left a stray '}', so clear first
      // and insert the query as one input event.
      await editor.locator('.view-lines').click();
      await page.keyboard.press('ControlOrMeta+A');
      await page.keyboard.press('Delete');
      await page.keyboard.insertText(query);
      const compact = (text: string | null) => (text ?? '').replace(/\s+/g, '');
      await expect.poll(async () => compact(await editor.locator('.view-lines').textContent()), { timeout: 10_000 }).toBe(compact(query));
      // GraphiQL parses the editor's text after a short debounce; running before then sends the new text
      // with the old operation name. The tab is titled after the parsed operation, so wait for that.
      await expect.poll(() => page.locator('.graphiql-tab-button').textContent(), { timeout: 10_000 }).toBe('CreatorSummary');

      await page.locator('button.graphiql-execute-button').click();
      const responsePane = page.locator('.graphiql-response .monaco-editor .view-lines');
      await expect.poll(async () => compact(await responsePane.textContent()), { timeout: 30_000 }).toContain('"value":9875885');
      const shown = compact(await responsePane.textContent());
      expect(shown).toContain(`"kolId":"${kolId}"`);
      // The default query asks for buckets; their absence shows the query we typed is the one that ran.
      expect(shown).not.toContain('buckets');
      expect(shown).not.toContain('errors');
      expect(upstream.calls()).toBe(1);
      expect(upstream.calls(kolId)).toBe(1);

      // Monaco starts its workers lazily; all three must come from the gateway and start.
      await expect.poll(() => [...workers].sort(), { timeout: 30_000 }).toEqual(['editor.worker.js', 'graphql.worker.js', 'json.worker.js']);
      expect(pageErrors).toEqual([]);
      expect(elsewhere).toEqual([]);
      expect(answeredFromElsewhere).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
