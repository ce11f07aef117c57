import { GraphQLError } from 'graphql';
import type { Plugin } from 'graphql-yoga';

const contentLengthPattern = /^\d+$/;
/** `identity`, alone or repeated, or no coding at all (an empty header): what a body the gateway reads may declare. */
const identityCoding = /^\s*(?:identity\s*(?:,\s*identity\s*)*)?$/i;

/**
 * Yoga's own body limit (`maxRequestBodySize`), minus its cost on every request: Yoga pipes every
 * body through a counting stream, and finishing that pipeline throws away an AbortController whose
 * DOMException (with its stack trace) was a tenth of the gateway's CPU per cached query. When the
 * request declares a valid Content-Length, Node's HTTP parser delivers exactly that many bytes (and
 * refuses a request that also declares Transfer-Encoding), so checking the header is the whole check;
 * only a chunked body, with no length, is counted as it streams in. Same limit, same errors as Yoga's.
 * A body in a content coding other than `identity` (gzip…) gets 415, like a media type the gateway does not take.
 */
export function useRequestBodyLimit(limitBytes: number): Plugin {
  return {
    onRequestParse({ request, requestParser, setRequestParser, fetchAPI, endResponse }) {
      // A compressed body was read as if it were plain, and its bytes failed as "not JSON" (400). It is a coding the
      // gateway does not take, so it gets 415 (RFC 9110 §15.5.16) saying which it does; decoding it would also let a
      // small body inflate past MAX_REQUEST_BYTES.
      const coding = request.headers.get('content-encoding');
      if (coding !== null && request.method !== 'GET' && request.method !== 'HEAD' && !identityCoding.test(coding)) {
        endResponse(new fetchAPI.Response(null, { status: 415, statusText: 'Unsupported Media Type', headers: { 'accept-encoding': 'identity' } }));
        return;
      }
      const contentLength = request.headers.get('content-length');
      if (contentLength !== null) {
        if (!contentLengthPattern.test(contentLength)) throw httpError(400, 'BAD_REQUEST', 'Content-Length header is invalid.');
        if (Number(contentLength) > limitBytes) throw tooLarge();
        return;
      }
      const body = request.body;
      if (!requestParser || !body) return;
      const parse = requestParser;
      setRequestParser((original) => {
        let bytesRead = 0;
        const counted = body.pipeThrough(
          new fetchAPI.TransformStream<Uint8Array, Uint8Array>({
            transform(chunk, controller) {
              bytesRead += chunk.byteLength;
              if (bytesRead > limitBytes) controller.error(tooLarge());
              else controller.enqueue(chunk);
            },
          }),
        );
        return parse(
          new fetchAPI.Request(original.url, {
            method: original.method,
            headers: original.headers,
            signal: original.signal,
            body: counted,
            // @ts-expect-error `duplex` is required for a streamed body but missing from the DOM types here.
            duplex: 'half',
          }),
        );
      });
    },
  };
}

function tooLarge(): GraphQLError {
  return httpError(413, 'REQUEST_ENTITY_TOO_LARGE', 'Request body too large');
}

function httpError(status: number, code: string, message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { http: { status }, code } });
}
