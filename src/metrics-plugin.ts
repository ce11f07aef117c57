import type { Plugin } from 'graphql-yoga';
import type { Registry } from 'prom-client';
import { refusedUnlessGetOrHead } from './refused-unless-get-or-head.js';

/** `GET /metrics`: the registry in Prometheus' text format, for a scraper. */
export function useMetricsRoute(registry: Registry, path = '/metrics'): Plugin {
  return {
    onRequest({ url, request, endResponse, fetchAPI }) {
      if (url.pathname !== path) return undefined;
      if (refusedUnlessGetOrHead(request, endResponse, fetchAPI)) return undefined;
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
