import type { Plugin } from 'graphql-yoga';
import type { Registry } from 'prom-client';

/** `GET /metrics`: the registry in Prometheus' text format, for a scraper. */
export function useMetricsRoute(registry: Registry, path = '/metrics'): Plugin {
  return {
    onRequest({ url, request, endResponse, fetchAPI }) {
      if (url.pathname !== path) return undefined;
      if (request.method !== 'GET' && request.method !== 'HEAD') {
        endResponse(new fetchAPI.Response('Method not allowed', { status: 405, headers: { allow: 'GET, HEAD' } }));
        return undefined;
      }
      // One turn of the event loop first: what answered requests record once their response is written
      // (src/logger.ts afterIo) is counted by a scrape that follows them.
      return new Promise((resolve) => setImmediate(resolve))
        .then(() => registry.metrics())
        .then((text) => {
          endResponse(
            new fetchAPI.Response(request.method === 'HEAD' ? null : text, {
              headers: { 'content-type': registry.contentType, 'cache-control': 'no-store' },
            }),
          );
        });
    },
  };
}
