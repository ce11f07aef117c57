import type { Plugin } from 'graphql-yoga';
import { codedError } from '../errors.js';

// Content types a browser may send cross-site without a CORS preflight.
const simpleContentTypes = ['application/x-www-form-urlencoded', 'multipart/form-data', 'text/plain'];

// Any one of these makes a browser ask (preflight) before sending cross-site, so CORS decides.
export const preflightHeaders = ['x-graphql-csrf', 'x-graphql-yoga-csrf', 'apollo-require-preflight', 'x-apollo-operation-name', 'authorization', 'x-api-key'];

/**
 * A browser sends a "simple" request (a GET, or a form-like POST) cross-site without asking the
 * server first, and with the user's network position. Such a request must carry a header that
 * forces a preflight, as @graphql-yoga/plugin-csrf-prevention and Apollo Server require; this is
 * the same rule with a coded error. JSON POSTs and any request with an API key pass.
 */
export function useCsrfPrevention(): Plugin {
  return {
    onRequestParse({ request }) {
      const contentType = request.headers.get('content-type')?.toLowerCase();
      const preflighted = contentType !== undefined && !simpleContentTypes.some((simple) => contentType.startsWith(simple));
      if (preflighted || preflightHeaders.some((header) => request.headers.has(header))) return;
      throw codedError('CSRF_HEADER_REQUIRED', { http: { status: 403 } });
    },
  };
}
