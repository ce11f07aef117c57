import { GraphQLError } from 'graphql';
import type { Plugin } from 'graphql-yoga';

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
