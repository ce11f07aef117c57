import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import * as bundled from '@graphql-yoga/render-graphiql/graphiql';
import type { GraphiQLOptions, Plugin } from 'graphql-yoga';

interface Asset {
  contentType: string;
  body: Buffer;
  gzipped?: Buffer;
}

/**
 * GraphiQL served entirely by the gateway: no CDN, so it works on networks that block public CDNs
 * and in air-gapped deployments. The bundle (scripts, styles, Monaco workers) ships inside an npm
 * package; each file gets its own URL under a content-hashed path so browsers cache it for a year
 * and the small HTML page is all that is fetched again.
 */
export function createGraphiQLAssets(mountPath = '/graphiql-assets') {
  const version = createHash('sha256').update(bundled.js).update(bundled.css).digest('hex').slice(0, 12);
  const base = `${mountPath}/${version}`;
  const favicon = bundled.favicon.slice(bundled.favicon.indexOf(',') + 1);
  const assets = new Map<string, Asset>([
    ['graphiql.js', { contentType: 'text/javascript; charset=utf-8', body: Buffer.from(bundled.js) }],
    ['graphiql.css', { contentType: 'text/css; charset=utf-8', body: Buffer.from(bundled.css) }],
    ['editor.worker.js', { contentType: 'text/javascript; charset=utf-8', body: Buffer.from(bundled.editorWorkerService) }],
    ['json.worker.js', { contentType: 'text/javascript; charset=utf-8', body: Buffer.from(bundled.jsonWorker) }],
    ['graphql.worker.js', { contentType: 'text/javascript; charset=utf-8', body: Buffer.from(bundled.graphqlWorker) }],
    ['favicon.ico', { contentType: 'image/x-icon', body: Buffer.from(favicon, 'base64') }],
  ]);

  const render = (options: GraphiQLOptions): string => /* HTML */ `<!doctype html>
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

  const plugin: Plugin = {
    onRequest({ url, request, endResponse, fetchAPI }) {
      if (!url.pathname.startsWith(`${mountPath}/`)) return;
      const [, requestedVersion, name] = url.pathname.slice(mountPath.length).split('/');
      const asset = requestedVersion === version && name ? assets.get(name) : undefined;
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
    },
  };

  return { plugin, render, basePath: base };
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}
