import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import type { GraphiQLOptions, Plugin } from 'graphql-yoga';

interface Asset {
  contentType: string;
  body: Buffer;
  gzipped?: Buffer;
}

interface Bundle {
  /** Where this bundle's files are served, under a hash of their content. */
  base: string;
  assets: Map<string, Asset>;
}

/**
 * GraphiQL served entirely by the gateway: no CDN, so it works on networks that block public CDNs
 * and in air-gapped deployments. The bundle (scripts, styles, Monaco workers) ships inside an npm
 * package; each file gets its own URL under a content-hashed path so browsers cache it for a year
 * and the small HTML page is all that is fetched again. The bundle (9 MB of source; loading it
 * measured +34 MB of heap, +85 MB RSS) is loaded on the first GraphiQL request, so a gateway nobody
 * opens GraphiQL on, or one with GRAPHIQL=false, never holds it.
 */
export function createGraphiQLAssets(mountPath = '/graphiql-assets') {
  let loading: Promise<Bundle> | undefined;
  const load = () => (loading ??= loadBundle(mountPath));

  const render = async (options: GraphiQLOptions): Promise<string> => {
    const { base } = await load();
    return /* HTML */ `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <title>${escapeHtml(options.title ?? 'GraphiQL')}</title>
    <link rel="icon" href="${base}/favicon.ico" />
    <link rel="stylesheet" href="${base}/graphiql.css" />
  </head>
  <body id="body" class="no-focus-outline">
    <noscript>You need to enable JavaScript to run GraphiQL.</noscript>
    <div id="root"></div>
    <script>
      const workers = {
        editorWorkerService: '${base}/editor.worker.js',
        json: '${base}/json.worker.js',
        graphql: '${base}/graphql.worker.js',
      };
      self.MonacoEnvironment = { globalAPI: false, getWorkerUrl: (_moduleId, label) => workers[label] };
    </script>
    <script src="${base}/graphiql.js"></script>
    <script>
      YogaGraphiQL.renderYogaGraphiQL(document.querySelector('#root'), ${JSON.stringify(options).replace(/</g, '\\u003c')});
    </script>
  </body>
</html>`;
  };

  const plugin: Plugin = {
    // Synchronous for every other path: an async hook hands Yoga a promise to wait for on every request.
    onRequest(payload) {
      return payload.url.pathname.startsWith(`${mountPath}/`) ? serveAsset(payload) : undefined;
    },
    // The page runs operations with whatever key the analyst typed: no other site may frame it (clickjacking),
    // and no browser may sniff it as something else. Only an HTML answer is the page; the check is one header read.
    onResponse({ response }) {
      if (!response.headers.get('content-type')?.startsWith('text/html')) return;
      response.headers.set('content-security-policy', "frame-ancestors 'none'");
      response.headers.set('x-frame-options', 'DENY');
      response.headers.set('x-content-type-options', 'nosniff');
    },
  };

  async function serveAsset({ url, request, endResponse, fetchAPI }: Parameters<NonNullable<Plugin['onRequest']>>[0]) {
    const { base, assets } = await load();
    const [requestedBase, name] = [url.pathname.slice(0, url.pathname.lastIndexOf('/')), url.pathname.slice(url.pathname.lastIndexOf('/') + 1)];
    const asset = requestedBase === base && name ? assets.get(name) : undefined;
    if (!asset || (request.method !== 'GET' && request.method !== 'HEAD')) {
      endResponse(new fetchAPI.Response('Not found', { status: 404 }));
      return;
    }
    const headers: Record<string, string> = {
      'content-type': asset.contentType,
      // The path changes whenever the bundle does, so the file under it never changes.
      'cache-control': 'public, max-age=31536000, immutable',
      vary: 'accept-encoding',
    };
    let body = asset.body;
    if (/\bgzip\b/.test(request.headers.get('accept-encoding') ?? '')) {
      asset.gzipped ??= gzipSync(asset.body);
      body = asset.gzipped;
      headers['content-encoding'] = 'gzip';
    }
    headers['content-length'] = String(body.length);
    endResponse(new fetchAPI.Response(request.method === 'HEAD' ? null : (body as Uint8Array<ArrayBuffer>), { status: 200, headers }));
  }

  return { plugin, render };
}

async function loadBundle(mountPath: string): Promise<Bundle> {
  const bundled = await import('@graphql-yoga/render-graphiql/graphiql');
  const version = createHash('sha256').update(bundled.js).update(bundled.css).digest('hex').slice(0, 12);
  const favicon = bundled.favicon.slice(bundled.favicon.indexOf(',') + 1);
  const assets = new Map<string, Asset>([
    ['graphiql.js', { contentType: 'text/javascript; charset=utf-8', body: Buffer.from(bundled.js) }],
    ['graphiql.css', { contentType: 'text/css; charset=utf-8', body: Buffer.from(bundled.css) }],
    ['editor.worker.js', { contentType: 'text/javascript; charset=utf-8', body: Buffer.from(bundled.editorWorkerService) }],
    ['json.worker.js', { contentType: 'text/javascript; charset=utf-8', body: Buffer.from(bundled.jsonWorker) }],
    ['graphql.worker.js', { contentType: 'text/javascript; charset=utf-8', body: Buffer.from(bundled.graphqlWorker) }],
    ['favicon.ico', { contentType: 'image/x-icon', body: Buffer.from(favicon, 'base64') }],
  ]);
  return { base: `${mountPath}/${version}`, assets };
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}
