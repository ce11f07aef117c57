import { GraphQLError } from 'graphql';

/**
 * The one table of error codes the gateway returns in `extensions.code`.
 * Messages are the gateway's own: an upstream's message may be logged, never returned.
 * `retryable` tells a client whether the same request could succeed later.
 */
export const errorCatalog = {
  BAD_USER_INPUT: { retryable: false, message: 'The request has an invalid argument.' },
  UPSTREAM_AUTH_FAILED: { retryable: false, message: 'The upstream rejected the gateway’s token.' },
  UPSTREAM_API_INVALID: { retryable: false, message: 'The upstream says this API is no longer valid.' },
  UPSTREAM_COLLECTION_FAILED: { retryable: true, message: 'The upstream could not collect this creator’s data.' },
  UPSTREAM_RATE_LIMITED: { retryable: true, message: 'The upstream is rate limiting the gateway.' },
  UPSTREAM_QUOTA_EXCEEDED: { retryable: false, message: 'The upstream daily quota is used up.' },
  UPSTREAM_INTERNAL_ERROR: { retryable: true, message: 'The upstream had an internal error.' },
  UPSTREAM_PERMISSION_DENIED: { retryable: false, message: 'The upstream denied permission for this data.' },
  UPSTREAM_INSUFFICIENT_BALANCE: { retryable: false, message: 'The upstream account balance is insufficient.' },
  UPSTREAM_ERROR: { retryable: false, message: 'The upstream answered with an error.' },
  UPSTREAM_TIMEOUT: { retryable: true, message: 'The upstream did not answer in time.' },
  UPSTREAM_UNAVAILABLE: { retryable: true, message: 'The upstream could not be reached.' },
  UPSTREAM_BAD_RESPONSE: { retryable: false, message: 'The upstream answered with data the gateway does not understand.' },
  UNAUTHENTICATED: { retryable: false, message: 'A valid API key is required: send `Authorization: Bearer <key>` or `x-api-key: <key>`.' },
  CSRF_HEADER_REQUIRED: {
    retryable: false,
    message: 'This request could be a cross-site request forgery: send it with Content-Type: application/json or an x-graphql-csrf header.',
  },
  RATE_LIMITED: { retryable: true, message: 'Too many upstream calls from this client; retry after extensions.retryAfterSeconds.' },
  UPSTREAM_BUDGET_EXCEEDED: { retryable: false, message: 'This operation would make more upstream calls than one operation may.' },
  QUERY_TOO_DEEP: { retryable: false, message: 'The operation is nested too deeply.' },
  QUERY_TOO_MANY_ALIASES: { retryable: false, message: 'The operation has too many aliases.' },
  QUERY_TOO_MANY_TOKENS: { retryable: false, message: 'The operation is too long.' },
  QUERY_TOO_COMPLEX: { retryable: false, message: 'The operation’s answer would hold too many fields.' },
  // Raised by Yoga itself, listed so the table is complete: a body over MAX_REQUEST_BYTES (HTTP 413),
  // an operationName the document does not resolve, and a malformed HTTP request such as a batch (an array of
  // operations), which the gateway does not take.
  REQUEST_ENTITY_TOO_LARGE: { retryable: false, message: 'Request body too large' },
  OPERATION_RESOLUTION_FAILURE: { retryable: false, message: 'Could not determine what operation to execute.' },
  GRAPHQL_PARSE_FAILED: { retryable: false, message: 'The document is not valid GraphQL.' },
  GRAPHQL_VALIDATION_FAILED: { retryable: false, message: 'The operation is not valid against the schema.' },
  BAD_REQUEST: { retryable: false, message: 'The HTTP request is not a GraphQL request the gateway accepts.' },
  // A request pipelined behind another on a connection that closes after it, while the gateway shuts down (HTTP 503).
  SHUTTING_DOWN: { retryable: true, message: 'The gateway is shutting down: send the request again on a new connection.' },
  // Automatic persisted queries (a hash without the query): Apollo Client's link looks for this exact message, or
  // the code, and then sends the whole query. The gateway keeps no store of queries to look hashes up in.
  PERSISTED_QUERY_NOT_SUPPORTED: { retryable: false, message: 'PersistedQueryNotSupported' },
} as const satisfies Record<string, { retryable: boolean; message: string }>;

export type ErrorCode = keyof typeof errorCatalog;

/** Extra, non-secret facts a coded error carries to the client. */
export interface ErrorDetails {
  kolId?: string;
  upstreamCode?: number;
  /** Overrides the catalog message, for input errors that say what was wrong. */
  message?: string;
  [key: string]: unknown;
}

/** Builds the client-facing error for a code; every coded error the gateway returns comes from here. */
export function codedError(code: ErrorCode, details: ErrorDetails = {}): GraphQLError {
  const { message, ...extensions } = details;
  const entry = errorCatalog[code];
  return new GraphQLError(message ?? entry.message, {
    extensions: { code, retryable: entry.retryable, ...extensions },
  });
}

export function badUserInput(message: string, details: Omit<ErrorDetails, 'message'> = {}): GraphQLError {
  return codedError('BAD_USER_INPUT', { ...details, message });
}

/** The same error (where it points, what caused it), with another message or extensions: GraphQLError is read-only. */
export function reworded(error: GraphQLError, changes: { message?: string; extensions: GraphQLError['extensions'] }): GraphQLError {
  return new GraphQLError(changes.message ?? error.message, {
    nodes: error.nodes,
    source: error.source,
    positions: error.positions,
    path: error.path,
    originalError: error.originalError,
    extensions: changes.extensions,
  });
}
