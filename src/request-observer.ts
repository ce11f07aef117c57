import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { getOperationAST, type ExecutionResult } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Context } from './context.js';
import { isKolId } from './link-structure/kol-id.js';
import { afterIo, type LogFields, type Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import { clientOf, peerAddress, type ApiKeys } from './protection/api-keys.js';
import type { RequestCost } from './request-cost.js';

export const requestIdHeader = 'x-request-id';
/** Yoga's GraphQL endpoint (src/app.ts); it also takes the path with a trailing slash. */
export const graphqlPath = '/graphql';
/** What a caller's request id may be: bounded, and only characters that are safe in a header and a log line. */
const requestIdPattern = /^[A-Za-z0-9._:+/=@-]{1,128}$/;

/**
 * What src/http-server.ts answered a request the app was still reading, when Node could not read its body (a bad chunk
 * size, a chunk extension over Node's limit): the app's own answer reaches nobody, so its line says what the client got.
 * (A body that did not arrive in time is told apart by the socket's error: `cutOffByRequestDeadline`.)
 */
export const answeredByHttpServer = new WeakMap<IncomingMessage, { status: number; code: string; detail: string }>();

/** A request's id: the caller's `x-request-id` when it is well-formed, else a new UUID. */
export function requestIdFrom(given: string | null | undefined): string {
  return typeof given === 'string' && requestIdPattern.test(given) ? given : randomUUID();
}
// Any length: a name past maxOperationNameLength is still that name, cut short in the log and `(other)` in metrics.
const operationNamePattern = /^[_A-Za-z][_0-9A-Za-z]*$/;
const leadingOperationName = /^\s*(?:query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)/;
/** Distinct operation names given their own metric series; later ones share `(other)`, so clients cannot explode cardinality. */
const maxOperationLabels = 100;
/**
 * Longest operation name given a series of its own or logged whole: GraphQL sets no limit, and a name of ~100 KB
 * repeated in twenty series made every scrape ~200 MB. Longer ones are `(other)` in metrics, cut short in logs.
 */
const maxOperationNameLength = 128;
/** An operation name as log lines write it: cut short past maxOperationNameLength. */
export function loggedOperationName(name: string | null): string | null {
  return name !== null && name.length > maxOperationNameLength ? `${name.slice(0, maxOperationNameLength)}…` : name;
}
/** Most failed creators named in one line: a 100-creator query failing whole says enough in 20, and the line stays short. */
const maxFailedKolIds = 20;

/** `cancelled`: the client closed the connection before its answer, which reached nobody (not a failure to count). */
export type OperationOutcome = 'success' | 'partial' | 'error' | 'cancelled';

interface RequestRecord {
  id: string;
  startedAt: number;
  /**
   * Set once Yoga starts parsing the request as GraphQL: every request to the GraphQL endpoint that
   * no route answered first (GraphiQL's page, /health, /metrics, a 404), refused ones included.
   */
  graphql: boolean;
  /** The executed operation's name (null: anonymous; undefined: nothing executed). */
  operation: string | null | undefined;
  /** What the client sent, to name an operation that never executed (it failed to parse or validate). */
  params: { query?: string | undefined; operationName?: string | undefined } | undefined;
  outcome: OperationOutcome | undefined;
  errorCodes: string[];
  /** Each creator an error in the response names (`extensions.kolId`) with the error's code, once per pair. */
  failedKolIds: Map<string, { kolId: string; code: string }> | undefined;
  cost: RequestCost | undefined;
  /** The TCP peer, for the line's `client` (GraphQL requests only). */
  remoteAddress?: string | undefined;
}

export interface RequestObserverOptions {
  logger: Logger;
  /** Absent when METRICS_ENABLED is off. */
  metrics?: Metrics | undefined;
  /** Names the client in a GraphQL request's line as the rate limiter does: `key:<n>`, else `ip:<address>`. */
  apiKeys: ApiKeys;
  /**
   * METRICS_OPERATION_NAMES: the only operation names given a series of their own. Empty: the first names seen take
   * the slots, until restart (ad-hoc names from GraphiQL can use them up before a dashboard's operation is seen).
   */
  operationNames?: readonly string[];
}

/**
 * A request src/http-server.ts answered itself, which the app never saw: refused before it was handed over (a request
 * pipelined while the gateway drains, a Host and target that make no URL), or one Node could not read (malformed, headers
 * too large, not arrived in time).
 */
export interface HttpRefusal {
  /** The id in the answer's `x-request-id` header. */
  requestId: string;
  status: number;
  /** The error code in the answer's body. */
  code: string;
  /** What was wrong, for the log line; never the client's bytes. */
  detail: string;
  /** The TCP peer, read while the connection was surely open. */
  remoteAddress: string | undefined;
  /** What Node read of the request; absent when it could not read one. */
  request?: { method: string; target: string; headers: IncomingHttpHeaders; durationMs: number };
}

export interface RequestObserver {
  /** The Yoga plugin: first in the list, so its clock and id wrap everything the other plugins do. */
  plugin: Plugin<Context>;
  /**
   * For src/http-server.ts: the log line and metrics of a request answered without the app, as the plugin writes them
   * for the app's. To `/graphql` (an origin-form target): the GraphQL line and metrics of a request refused before it
   * ran. To another route: that route's `debug` line. Where it went is not known (Node could not read it, or its target
   * is not a path): an `info` line without the GraphQL counters, and no metrics. Written after the current I/O.
   */
  refused(refusal: HttpRefusal): void;
  /**
   * Resolves once every request the app has taken has had its line written (at once when none is open). For shutdown:
   * a request cut off at SHUTDOWN_TIMEOUT_MS finishes once its upstream calls are failed, and its line, which names its
   * client and the attempts it paid for, must be written before the process exits.
   */
  settled(): Promise<void>;
}

/** What the log line says of the HTTP request. */
interface Seen {
  method: string;
  path: string;
  /** For the line's `client`: only the API key headers are read. */
  headers: Headers;
  /** What the client sent to name an operation that never executed; asked only then. */
  params(): { query?: string | undefined; operationName?: string | undefined };
}

/**
 * Gives every request an id (the caller's `x-request-id` when well-formed, else a new UUID), echoes
 * it, and writes one JSON log line per request: GraphQL requests at `info` (refused ones too), with the
 * operation, its outcome, error codes and what its loads cost; other routes (health checks, scrapes,
 * GraphiQL and its assets) at `debug`. Also records the GraphQL operation metrics. `refused` does the same for the
 * requests src/http-server.ts answers without the app.
 */
export function createRequestObserver(options: RequestObserverOptions): RequestObserver {
  const { logger, metrics } = options;
  const records = new WeakMap<Request, RequestRecord>();
  const operationLabels = new Set<string>();
  /** Requests taken whose line is not written yet, and who waits for there to be none. */
  let open = 0;
  const whenSettled: Array<() => void> = [];
  const lineDone = () => {
    open -= 1;
    if (open === 0) for (const resolve of whenSettled.splice(0)) resolve();
  };

  const listed = options.operationNames?.length ? new Set(options.operationNames) : undefined;
  const operationLabel = (name: string | null): string => {
    if (name === null) return '(anonymous)';
    if (listed) return listed.has(name) ? name : '(other)';
    if (operationLabels.has(name)) return name;
    if (name.length > maxOperationNameLength) return '(other)';
    if (operationLabels.size >= maxOperationLabels) return '(other)';
    operationLabels.add(name);
    return name;
  };

  const plugin: Plugin<Context> = {
    instrumentation: {
      // Wraps the whole request, so the clock starts before any plugin can answer early (GraphiQL, /health).
      request({ request }, wrapped) {
        records.set(request, {
          id: requestIdFrom(request.headers.get(requestIdHeader)),
          startedAt: performance.now(),
          graphql: false,
          operation: undefined,
          params: undefined,
          outcome: undefined,
          errorCodes: [],
          failedKolIds: undefined,
          cost: undefined,
        });
        open += 1;
        return wrapped();
      },
    },
    // Runs before the API-key, CSRF and body-size checks (plugins after this one), so a request they
    // refuse (401, 403, 413), before any parameters are read, still counts as a GraphQL operation.
    onRequestParse({ request, serverContext }) {
      const record = records.get(request);
      if (!record) return;
      record.graphql = true;
      // Read now, while the connection is surely open: a socket that has closed no longer knows its peer.
      record.remoteAddress = peerAddress(serverContext);
    },
    onParams({ params, request }) {
      const record = records.get(request);
      if (record) record.params = params;
    },
    onExecute({ args }) {
      const record = records.get(args.contextValue.request);
      if (!record) return;
      record.operation = getOperationAST(args.document, args.operationName)?.name?.value ?? null;
      record.params = undefined;
      record.cost = args.contextValue.requestCost;
    },
    onResultProcess({ request, result }) {
      const record = records.get(request);
      if (!record) return;
      const results = (Array.isArray(result) ? result : [result]) as Array<ExecutionResult | AsyncIterable<unknown>>;
      for (const single of results) {
        if (Symbol.asyncIterator in single) continue;
        if (single.errors?.length) {
          record.outcome = single.data == null ? 'error' : 'partial';
          for (const error of single.errors) {
            const given = error.extensions?.['code'];
            const code = typeof given === 'string' ? given : 'UNKNOWN';
            record.errorCodes.push(code);
            // Which creators failed, and how: on-call's first question, which `errorCodes` alone cannot answer.
            // Not an id the gateway refused as bad input: it is whatever the client sent (a secret, even), cut short past
            // redaction's reach, and the first 32 digits of a longer one would read as an id the client never asked for.
            // One the upstream refused (its code 400, `upstreamCode`) was a well-formed id it was asked about: named.
            const kolId = error.extensions?.['kolId'];
            const refusedHere = code === 'BAD_USER_INPUT' && error.extensions?.['upstreamCode'] === undefined;
            if (!refusedHere && isKolId(kolId)) (record.failedKolIds ??= new Map()).set(`${code}\n${kolId}`, { kolId, code });
          }
        } else {
          record.outcome ??= 'success';
        }
      }
    },
    onResponse({ request, response, serverContext }) {
      const record = records.get(request);
      if (!record) return;
      records.delete(request);
      response.headers.set(requestIdHeader, record.id);
      const durationMs = performance.now() - record.startedAt;
      // A client too slow to send this request was answered 408 by src/http-server.ts (Node's deadline), not this
      // response. Pipelined behind another, the request was cut off all the same, though nothing here saw its connection close.
      const cutOff = cutOffByRequestDeadline(serverContext);
      // A body Node could not read: the HTTP server answered it (400, or 413), an error like any refused request's.
      const refusedBody = cutOff ? undefined : answeredBodyRefusal(serverContext);
      if (refusedBody) {
        record.outcome = 'error';
        record.errorCodes = [refusedBody.code];
      }
      // The client closed the connection before its answer: what the answer holds never reached anyone. Or the gateway
      // closed it (cut off at SHUTDOWN_TIMEOUT_MS): the socket is destroyed at once, the request's signal aborted only
      // once its close event comes round, after this answer to nobody.
      const clientGone = !refusedBody && (cutOff || request.signal.aborted || connectionDestroyed(serverContext));
      const status = cutOff ? 408 : (refusedBody?.status ?? response.status);
      // Everything else waits until the response is on its way: building and writing the log line and recording
      // the metrics never delay an answer (they ran before the response was written, ~0.1 ms of a cache miss).
      const writeLine = () => {
        const seen: Seen = {
          method: request.method,
          path: pathOf(request.url),
          headers: request.headers,
          // A request refused before its body was read (no key, too large) has no params; a GET carries them in its URL.
          params: () => record.params ?? paramsInUrl(request),
        };
        const more = refusedBody ? { detail: refusedBody.detail } : {};
        if (record.graphql) finishGraphql(record, seen, status, durationMs, clientGone, more);
        else logger.debug('request', { ...lineOf(record, seen, status, durationMs), ...more });
      };
      afterIo(logger, 'request log line and metrics', () => {
        try {
          writeLine();
        } finally {
          lineDone();
        }
      });
    },
  };

  function refused(refusal: HttpRefusal): void {
    afterIo(logger, 'request log line and metrics', () => {
      const { request, status, code, detail } = refusal;
      const headers = apiKeyHeaders(request?.headers);
      const path = request ? originFormPath(request.target) : null;
      if (!request || path === null) {
        // Where it was going is not known: no GraphQL fields, no metrics.
        logger.info('request', {
          requestId: refusal.requestId,
          method: request?.method ?? null,
          path: null,
          status,
          ...(request ? { durationMs: roundedMs(request.durationMs) } : {}),
          client: clientOf(options.apiKeys, headers, refusal.remoteAddress),
          outcome: 'error',
          errorCodes: [code],
          detail,
        });
        return;
      }
      const record: RequestRecord = {
        id: refusal.requestId,
        startedAt: 0,
        graphql: path === graphqlPath || path === `${graphqlPath}/`,
        operation: undefined,
        params: undefined,
        outcome: 'error',
        errorCodes: [code],
        failedKolIds: undefined,
        cost: undefined,
        remoteAddress: refusal.remoteAddress,
      };
      // Nothing of the request was read: no operation name, whatever its URL says.
      const seen: Seen = { method: request.method, path, headers, params: () => ({}) };
      if (record.graphql) finishGraphql(record, seen, status, request.durationMs, false, { detail });
      else logger.debug('request', { ...lineOf(record, seen, status, request.durationMs), detail });
    });
  }

  function lineOf(record: RequestRecord, seen: Seen, status: number, durationMs: number) {
    return {
      requestId: record.id,
      method: seen.method,
      path: seen.path,
      status,
      durationMs: roundedMs(durationMs),
    };
  }

  function finishGraphql(record: RequestRecord, seen: Seen, status: number, durationMs: number, clientGone: boolean, more: LogFields = {}) {
    // A client that hung up is not a failure of the gateway's: error-rate SLOs over `partial`/`error` must not count it.
    const outcome: OperationOutcome = clientGone ? 'cancelled' : (record.outcome ?? (status < 400 ? 'success' : 'error'));
    // A 406 answer has no body, and one whose client has gone is sent to nobody: their errors reached no client (and a
    // call given up because its clients had gone must not read as an upstream outage).
    const unseen = status === 406 || clientGone;
    const errorCodes = unseen ? [] : record.errorCodes;
    const failed = unseen || !record.failedKolIds ? [] : [...record.failedKolIds.values()];
    const operation = record.operation !== undefined ? record.operation : claimedOperationName(seen.params());
    const cost = record.cost;
    logger.info('request', {
      ...lineOf(record, seen, status, durationMs),
      client: clientOf(options.apiKeys, seen.headers, record.remoteAddress),
      operation: loggedOperationName(operation),
      outcome,
      upstreamCalls: cost?.upstreamCalls ?? 0,
      upstreamAttempts: cost?.upstreamAttempts ?? 0,
      cacheHits: cost?.cacheHits ?? 0,
      cacheJoins: cost?.cacheJoins ?? 0,
      redisHits: cost?.redisHits ?? 0,
      staleServed: cost?.staleServed ?? 0,
      errorCodes: [...new Set(errorCodes)],
      failedKolIds: failed.slice(0, maxFailedKolIds),
      ...(failed.length > maxFailedKolIds ? { failedKolIdsOmitted: failed.length - maxFailedKolIds } : {}),
      ...(clientGone ? { clientGone: true } : {}),
      ...more,
    });
    if (metrics) {
      // Only an operation that ran and answered with data may claim a series of its own: a refused request (no API key,
      // too large, and also one the cost check or the rate limit refused once Yoga had started executing it, `data:
      // null`) names whatever it likes, and must not use up the label slots real operations need.
      const executed = record.operation !== undefined && record.outcome !== undefined && record.outcome !== 'error';
      const label = executed || operation === null || operationLabels.has(operation) || listed ? operationLabel(operation) : '(other)';
      const labels = { operation: label, outcome };
      metrics.graphqlOperations.inc(labels);
      metrics.graphqlDuration.observe(labels, durationMs / 1000);
      for (const code of errorCodes) metrics.graphqlErrors.inc({ code });
    }
  }

  const settled = () => (open === 0 ? Promise.resolve() : new Promise<void>((resolve) => whenSettled.push(resolve)));

  return { plugin, refused, settled };
}

const roundedMs = (ms: number) => Math.round(ms * 1000) / 1000;

/** The path of an origin-form target (`/graphql?…`) as the app would see it; null for any other form (`*`, a URL). */
function originFormPath(target: string): string | null {
  if (!target.startsWith('/')) return null;
  try {
    // As the fetch layer builds the request's URL (host, then target): dot segments resolved, characters escaped.
    return pathOf(new URL(`http://gateway${target}`).href);
  } catch {
    return null;
  }
}

/** The headers that name a client (its API key), as fetch Headers. */
function apiKeyHeaders(given: IncomingHttpHeaders | undefined): Headers {
  const headers = new Headers();
  for (const name of ['authorization', 'x-api-key']) {
    const value = given?.[name];
    if (typeof value === 'string') headers.set(name, value);
  }
  return headers;
}

/**
 * Whether Node cut the connection off because this request did not arrive within `requestTimeout` (it was answered 408).
 * Only the request still arriving was: one before it on the connection, which had arrived whole, lost its connection.
 */
function cutOffByRequestDeadline(context: unknown): boolean {
  const incoming = (context as { req?: IncomingMessage } | undefined)?.req;
  if (incoming === undefined || incoming.complete) return false;
  return (incoming.socket?.errored as NodeJS.ErrnoException | null | undefined)?.code === 'ERR_HTTP_REQUEST_TIMEOUT';
}

/** What src/http-server.ts answered this request, the app still reading its body, when Node could not read it. */
function answeredBodyRefusal(context: unknown) {
  const incoming = (context as { req?: IncomingMessage } | undefined)?.req;
  return incoming === undefined ? undefined : answeredByHttpServer.get(incoming);
}

/** Whether the request's connection is already destroyed, so no answer can reach its client. */
function connectionDestroyed(context: unknown): boolean {
  return (context as { req?: IncomingMessage } | undefined)?.req?.socket?.destroyed === true;
}

/**
 * The name of an operation that never ran: the `operationName` the client sent, else the name
 * written at the start of the document, if either is a well-formed GraphQL name.
 */
function claimedOperationName(params: { query?: string | undefined; operationName?: string | undefined }): string | null {
  const claimed = params.operationName ?? (typeof params.query === 'string' ? leadingOperationName.exec(params.query)?.[1] : undefined);
  return typeof claimed === 'string' && operationNamePattern.test(claimed) ? claimed : null;
}

function paramsInUrl(request: Request): { query?: string | undefined; operationName?: string | undefined } {
  if (request.method !== 'GET') return {};
  const search = new URL(request.url).searchParams;
  return { query: search.get('query') ?? undefined, operationName: search.get('operationName') ?? undefined };
}

/** The path alone: a query string is the client's (it may hold a whole GraphQL document, or secrets) and is never logged. */
function pathOf(url: string): string {
  const afterScheme = url.indexOf('//');
  const start = url.indexOf('/', afterScheme === -1 ? 0 : afterScheme + 2);
  if (start === -1) return '/';
  const end = url.indexOf('?', start);
  return (end === -1 ? url.slice(start) : url.slice(start, end)).slice(0, 256);
}
