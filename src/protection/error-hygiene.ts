import { GraphQLError } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { errorCatalog, reworded, type ErrorCode } from '../errors.js';

// graphql-js's hints: ` Did you mean "a", "b", or "c"?`, ` Did you mean the enum value "A"?`, ` Did you mean to use an inline fragment on "T"?`.
const suggestion = /\s*Did you mean [^?]*\?/g;

/**
 * A code for the errors graphql-js raises without one (Yoga codes its own, and every gateway error has one), so
 * no error reaches a client, a log line or `xingtu_graphql_errors_total` as UNKNOWN: variables that fail
 * coercion and arguments that do at execution are the client's input. (An operation type the schema lacks never
 * gets this far: the cost check refuses it, coded, before execution.)
 */
function codeFor(message: string): { code: string; retryable: boolean } | undefined {
  if (message.startsWith('Variable "$') || message.startsWith('Argument "')) return { code: 'BAD_USER_INPUT', retryable: false };
  return undefined;
}

/**
 * `retryable` for an error Yoga raised with a code but without it (parse, validation, bad requests), from the error
 * catalog. A code the catalog does not know (INTERNAL_SERVER_ERROR: an unexpected error's is not known) is not claimed.
 */
function retryableFor(extensions: GraphQLError['extensions']): { retryable: boolean } | undefined {
  if (extensions.retryable !== undefined || typeof extensions.code !== 'string' || !(extensions.code in errorCatalog)) return undefined;
  return { retryable: errorCatalog[extensions.code as ErrorCode].retryable };
}

/** Yoga's answer to a mutation sent by GET (405, `Allow: POST`), checked before the schema is. */
const mutationOnlyByPost = 'Can only perform a mutation operation from a POST request.';

/**
 * A mutation by GET answered as by POST (src/protection/upstream-planner.ts): the schema has no mutation type, so the
 * 405's "only by POST" sent the client to a POST that fails too, and its BAD_REQUEST was not the documented code.
 */
function noMutationType(error: GraphQLError): GraphQLError {
  return reworded(error, {
    message: 'This gateway answers queries only: its schema has no mutation type.',
    extensions: { code: 'GRAPHQL_VALIDATION_FAILED', retryable: errorCatalog.GRAPHQL_VALIDATION_FAILED.retryable, http: { status: 400 } },
  });
}

/**
 * The error as it is sent, without the error that caused it. Yoga's serializer rebuilds each error it sends and,
 * recursively, its cause; each rebuilt cause's stack trace is read by the error built on it, so formatted anew for
 * every error sent: one creator failing at 2,400 places in an answer took about 0.3 s of CPU, mostly formatting stack
 * traces nobody reads. Nothing after this plugin reads the cause (masking and its log line already have), and a cause
 * is never sent.
 */
function withoutCause(error: GraphQLError, message: string, extensions: GraphQLError['extensions']): GraphQLError {
  // Without a stack trace of its own either: capturing one is most of what building an error costs, and this one is
  // never thrown (the serializer builds another anyway).
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new GraphQLError(message, { nodes: error.nodes, source: error.source, positions: error.positions, path: error.path, extensions });
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/**
 * The last word on every error the gateway sends, whatever raised it (request parser, validation, variables,
 * execution, a plugin), so it also covers errors that never reach maskError:
 * - no `extensions.originalError`: Yoga's JSON parser puts the parser's own message there;
 * - with `hideSuggestions` (INTROSPECTION=false), no "Did you mean …?": it names fields, arguments, types and enum values;
 * - an `extensions.code` where graphql-js gave none (`codeFor`), and `retryable` where Yoga gave none (`retryableFor`).
 */
export function useErrorHygiene(options: { hideSuggestions: boolean }): Plugin {
  const clean = (error: GraphQLError): GraphQLError => {
    if (error.extensions.code === 'BAD_REQUEST' && error.message === mutationOnlyByPost) return noMutationType(error);
    const message = options.hideSuggestions ? error.message.replace(suggestion, '') : error.message;
    const code = error.extensions.code === undefined ? codeFor(error.message) : retryableFor(error.extensions);
    if (message === error.message && error.extensions.originalError === undefined && code === undefined) {
      return error.originalError == null ? error : withoutCause(error, message, error.extensions);
    }
    const { originalError, http, ...extensions } = error.extensions;
    if (code !== undefined) Object.assign(extensions, code);
    if (http) {
      // Yoga answers an error that carried an originalError with its own HTTP status (400 for a body that is not
      // JSON) rather than 200: keep that status now the detail is gone. `http` itself is never sent.
      extensions.http = originalError === undefined ? http : { ...(http as object), spec: false };
    }
    return withoutCause(error, message, extensions);
  };
  return {
    onResultProcess({ result, setResult }) {
      // One result per request: batching is off, and there are no subscriptions or incremental delivery.
      if (Array.isArray(result) || Symbol.asyncIterator in result || !result.errors?.length) return;
      setResult({ ...result, errors: result.errors.map((error) => (error instanceof GraphQLError ? clean(error) : error)) });
    },
  };
}
