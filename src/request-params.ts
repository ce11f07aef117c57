import { GraphQLError } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { codedError } from './errors.js';

/**
 * A GET, or a form POST, carries `variables` and `extensions` as JSON text in its parameters, which Yoga parses
 * without catching: text that is not JSON became a 500 and an "unexpected error" log line. It is the client's
 * mistake, so it gets what a POST body that is not JSON gets: HTTP 400, `BAD_REQUEST`.
 */
export function useMalformedParamsAsBadRequest(): Plugin {
  return {
    onRequestParse({ request, requestParser, setRequestParser }) {
      if (!requestParser) return;
      // A JSON body's parser already answers 400 for text that is not JSON: no wrapper on the common path.
      if (request.method === 'POST' && !request.headers.get('content-type')?.includes('application/x-www-form-urlencoded')) return;
      const parse = requestParser;
      setRequestParser(async (parsing) => {
        try {
          return await parse(parsing);
        } catch (error) {
          if (!(error instanceof SyntaxError)) throw error;
          throw new GraphQLError('The `variables` or `extensions` parameter is not valid JSON.', {
            extensions: { http: { status: 400 }, code: 'BAD_REQUEST' },
          });
        }
      });
    },
  };
}

/** What Yoga can answer in (its result processors): JSON for a query, and the streaming types. */
const answerTypeNames = ['application/graphql-response+json', 'application/json', 'multipart/mixed', 'text/event-stream'];
const answerTypes = answerTypeNames.map((type) => type.split('/'));
/** A 406's `accept` header, as Yoga writes one (with `charset=utf-8`). */
const answerTypesListed = answerTypeNames.map((type) => `${type}; charset=utf-8`).join(', ');

/**
 * Whether a request's `Accept` lets Yoga answer it at all, by Yoga's own rule (use-result-processor.js: no header means
 * any type, a charset other than utf-8 rules a type out, `q` is not read).
 */
export function acceptsAnAnswer(accept: string | null): boolean {
  if (!accept) return true;
  for (const range of accept.replace(/\s/g, '').toLowerCase().split(',')) {
    const [type = '', ...params] = range.split(';');
    const charset = params.find((param) => param.includes('charset='));
    if (charset !== undefined && charset !== 'charset=utf-8') continue;
    const [main, sub] = type.split('/');
    if (answerTypes.some(([answerMain, answerSub]) => (main === '*' || main === answerMain) && (sub === '*' || sub === answerSub))) return true;
  }
  return false;
}

/**
 * A client whose `Accept` names no type Yoga can answer in gets 406 before its request is parsed. Yoga finds that out
 * only once it has a result to send: the operation had run, and its upstream calls been paid and charged to the client.
 */
export function useAcceptableAnswer(): Plugin {
  return {
    onRequestParse({ request }) {
      if (acceptsAnAnswer(request.headers.get('accept'))) return;
      // Never sent: no type the client takes can carry it, so Yoga answers 406 with no body.
      throw codedError('BAD_REQUEST', { message: 'The Accept header names no media type the gateway answers in.', http: { status: 406 } });
    },
    onResponse({ response }) {
      // Yoga's own `accept` here lists its types once per range the client sent, the last without its charset, and none
      // at all for a range refused only for its charset: the types the gateway answers in, once each, say what to ask for.
      if (response.status === 406) response.headers.set('accept', answerTypesListed);
    },
  };
}

/**
 * A request without a query is not a GraphQL request: HTTP 400 whatever the client accepts (Yoga answers 200 to an
 * `application/json` client). One that sends a persisted query's hash instead is told the gateway does not take
 * them, in the form Apollo Client's persisted-query link recognises, so it falls back to sending the query.
 */
export function useQueryRequired(): Plugin {
  return {
    onParams({ params }) {
      if (Array.isArray(params) || params.query != null) return;
      const { extensions } = params as { extensions?: unknown };
      const persisted = typeof extensions === 'object' && extensions !== null && 'persistedQuery' in extensions;
      throw persisted
        ? codedError('PERSISTED_QUERY_NOT_SUPPORTED', { http: { status: 400 } })
        : codedError('BAD_REQUEST', { message: 'Must provide query string.', http: { status: 400 } });
    },
  };
}

/**
 * Media types are case-insensitive (RFC 9110), but Yoga matches `Content-Type` as written: `APPLICATION/JSON` got 415.
 * The type (and its parameters: no body the gateway takes has a case-sensitive one) is lowered before Yoga reads it.
 */
export function useCaseInsensitiveContentType(): Plugin {
  return {
    onRequest({ request }) {
      const type = request.headers.get('content-type');
      if (type !== null && /[A-Z]/.test(type)) request.headers.set('content-type', type.toLowerCase());
    },
  };
}
