import { LRUCache } from 'lru-cache';
import { CallAbandoned, UpstreamError, isUnusableAnswer } from '../upstream/upstream-error.js';
import { linkStructureRequestKey, type LinkStructure, type LinkStructureRequest } from './model.js';

/**
 * Where a fetched answer came from: an upstream HTTP request this process sent (whatever its outcome), a fresh
 * entry in the shared Redis cache, or the upstream call another replica made while this one waited for it.
 */
export type FetchSource = 'upstream' | 'redis' | 'replica';

/**
 * What a miss calls: the shared tier, or the upstream client. It reports through `via` where its answer came
 * from, once it knows; it reports nothing when no request went anywhere (the circuit breaker failed it fast).
 */
export type LinkStructureFetch = (
  request: LinkStructureRequest,
  via?: (source: FetchSource) => void,
  /** Whether any request still wants the answer: a call not yet sent may be given up while none does. */
  interest?: CallInterest,
) => Promise<LinkStructure>;

/** Whether the requests that asked for a call are still there. */
export interface CallInterest {
  /** Aborted once every request that asked has gone; a request that joins later renews it (a new signal). */
  readonly lost: AbortSignal;
}

export interface LinkStructureCacheOptions {
  /** The call a miss makes. */
  fetch: LinkStructureFetch;
  /** 0 turns the cache off; concurrent misses still share one call. */
  ttlMs: number;
  maxEntries: number;
  /** How long past its TTL an answer is kept to serve when the upstream fails (stale-if-error); 0 keeps none. */
  staleMs?: number;
  /** Observes hits, misses, joins and stale serves (metrics). */
  onLookup?: (outcome: CacheOutcome) => void;
  /** Maps requests the upstream cannot tell apart onto one, so they share an entry and a call (the upstream's rule). */
  canonical?: (request: LinkStructureRequest) => LinkStructureRequest;
  /** The request an answer answers, by the endpoint that gave it (the upstream's rule): where the answer is kept. */
  answered?: (request: LinkStructureRequest, answer: LinkStructure) => LinkStructureRequest;
  /**
   * With a shared level (Redis): the answers it holds that stay fresh at least `minFreshMs` more, and the unusable answers
   * (`isUnusableAnswer`) it remembers that long. Planning takes them into memory, so the loads that follow are answered
   * there and planning need not count them as calls.
   */
  peekShared?: (requests: readonly LinkStructureRequest[], minFreshMs: number) => Promise<Array<LinkStructure | UpstreamError | undefined>>;
  /**
   * Told when a load serves the expired copy the shared level passed up with an unusable answer (`expiredCopy`), the first
   * time that copy is served: the shared level counts it then (its `stale_served`), once per copy it read, whichever read
   * it (a load's, the cost check's) and however many loads serve it (joined, or answered from memory later).
   */
  onExpiredCopyServed?: () => void;
}

/**
 * `hit`: served from memory; `join`: shared a call already in flight (reported when that call ends: a load whose joined
 * call was given up makes its own, and reports that one's outcome instead); `miss`: memory could not answer, so a
 * call was made; then, for the lookup that made it, where the answer came from (a `FetchSource`: `upstream`
 * only when an upstream request was really sent), and `stale` when the call it made or joined failed and an expired
 * answer was served instead (once per load served it).
 */
/** `attempt`: one request sent to the upstream for the load's call (its first, each retry, a re-send to gw). */
export type CacheOutcome = 'hit' | 'join' | 'miss' | 'stale' | 'attempt' | FetchSource;

/** What a load would do right now, without doing it: only `stale` and `absent` make an upstream call. */
export type CachePeek = 'fresh' | 'in-flight' | 'stale' | 'absent';

/**
 * The calls in flight an operation's plan counted as free to join, by request key: its loads join them even if
 * they have settled (and left the cache) by the time the loads run, sharing their answer or failure, rather than
 * make a call of their own that nobody was charged for. One per GraphQL request.
 */
export type PlannedJoins = Map<string, Promise<LinkStructure>>;

export interface LinkStructureCache {
  /**
   * `observe` sees this lookup's outcome too (per-request accounting), besides the cache-wide `onLookup`;
   * `planned` holds the calls this request's plan counted on joining; `gone` aborts when the request asking has
   * gone (its client closed the connection). A call every asker of which has gone is told so (`CallInterest`), and
   * is not sent if it has not been yet. A load without `gone` keeps its call wanted.
   */
  load(
    request: LinkStructureRequest,
    observe?: (outcome: CacheOutcome) => void,
    planned?: PlannedJoins,
    gone?: AbortSignal,
  ): Promise<LinkStructure>;
  /** Non-mutating look-up (no recency update, no call), for planning what an operation will cost. */
  peek(request: LinkStructureRequest): CachePeek;
  /**
   * Whether a load now would answer with a failure remembered here (`isUnusableAnswer`), no answer or expired copy
   * standing in for it: free of upstream calls, but an error at every place the answer asks for it.
   */
  answersWithFailure(request: LinkStructureRequest): boolean;
  /**
   * How many of these (distinct) requests would make an upstream call now: neither fresh in memory nor in
   * flight, nor fresh in the shared level. Synchronous unless the shared level has to be asked. The calls in
   * flight it counted as free are put in `planned`, for the loads that follow.
   */
  upstreamCallsFor(requests: readonly LinkStructureRequest[], planned?: PlannedJoins): number | Promise<number>;
  readonly size: number;
  clear(): void;
}

interface Entry {
  value: LinkStructure;
  freshUntil: number;
  /** Taken from Redis while planning, not yet loaded: its first load reports `redis` rather than `hit`. */
  fromShared?: boolean;
}

/** An unusable answer remembered (`isUnusableAnswer`) until `until`. */
interface Unusable {
  error: UpstreamError;
  until: number;
  /** Taken from Redis while planning, not yet loaded: its first load reports a `miss` rather than a `hit`. */
  fromShared?: boolean;
}

/**
 * How long an answer must stay fresh to be counted free when an operation is planned: one that expires between
 * the plan and the load would make an upstream call nobody was charged for (a client can see when from
 * `fetchedAt`, and time its requests to it).
 */
const planMarginMs = 1_000;

/**
 * The process-wide cache in front of the upstream: successful answers are kept for the TTL,
 * and a key being fetched is fetched once however many requests ask for it meanwhile
 * (single-flight). Failures are not kept (the next request tries again), except an answer that was paid for and cannot
 * be used (`isUnusableAnswer`): remembered as long as an answer would be, so asking again does not pay for it again.
 * An expired answer is kept for a grace period and served, marked stale, when the call that should replace it fails.
 */
export function createLinkStructureCache(options: LinkStructureCacheOptions): LinkStructureCache {
  const staleMs = options.staleMs ?? 0;
  const entries =
    options.ttlMs > 0
      ? new LRUCache<string, Entry>({ max: options.maxEntries, ttl: options.ttlMs + staleMs, ttlAutopurge: false })
      : undefined;
  /** Unusable answers by request key, with when they stop being remembered (`isUnusableAnswer`). */
  const unusable = options.ttlMs > 0 ? new LRUCache<string, Unusable>({ max: options.maxEntries, ttl: options.ttlMs }) : undefined;
  /** The unusable answer remembered for `key` until at least `until`, if any. */
  const unusableAnswer = (key: string, until: number) => {
    const known = unusable?.peek(key);
    return known && until < known.until ? known : undefined;
  };
  /** Remembers an unusable answer for the TTL; one another replica remembered in Redis, only as long as it does. */
  const rememberUnusable = (key: string, error: UpstreamError, fromShared?: boolean) =>
    unusable?.set(key, { error, until: error.rememberedUntil ?? Date.now() + options.ttlMs, ...(fromShared ? { fromShared } : {}) });
  const canonical = options.canonical ?? ((request: LinkStructureRequest) => request);
  const answered = options.answered ?? ((request: LinkStructureRequest) => request);
  /** Each call in flight, with the requests that asked for it (which of them are still there). */
  const inFlight = new Map<string, { call: Promise<LinkStructure>; askers?: Askers }>();

  const usable = (entry: Entry | undefined, now = Date.now()) => entry !== undefined && now < entry.freshUntil + staleMs;
  /** The unusable answers whose passed-up copy (`expiredCopy`) has been served, and so counted (`onExpiredCopyServed`). */
  const copiesServed = new WeakSet<UpstreamError>();
  /** The expired copy the shared level passed up with an unusable answer (`expiredCopy`), within the grace an entry here gets. */
  const passedUpCopy = (error: unknown) => {
    const copy = error instanceof UpstreamError ? error.expiredCopy : undefined;
    return copy && Date.now() < copy.fetchedAt.getTime() + options.ttlMs + staleMs ? copy : undefined;
  };
  /**
   * The key of the request whose answer also does for this one, if any: a request that lets the upstream answer from
   * its own cache (`acceptCache`) takes the gateway's fresh answer (or the call in flight for it) just as well.
   */
  const substituteKey = (request: LinkStructureRequest) =>
    request.acceptCache ? linkStructureRequestKey({ ...request, acceptCache: false }) : undefined;
  /** Its own entry if fresh (until `until`), else the substitute's if that is. Uses `peek` when `quiet` (no recency update). */
  const freshEntry = (key: string, substitute: string | undefined, until: number, quiet = false) => {
    const own = quiet ? entries?.peek(key) : entries?.get(key);
    if (own && until < own.freshUntil) return own;
    if (substitute === undefined) return undefined;
    const other = quiet ? entries?.peek(substitute) : entries?.get(substitute);
    return other && until < other.freshUntil ? other : undefined;
  };
  /**
   * The call in flight for `key`, else for its substitute; else one the plan counted on joining (settled, maybe: its
   * askers are not known). In flight first, the substitute's too: the plan keeps a substitute's call under the asking
   * key, and a join through the plan is not one of the call's askers, so the call could be given up while it waits.
   */
  const pendingCall = (key: string, substitute: string | undefined, planned: PlannedJoins | undefined) => {
    const flying = inFlight.get(key) ?? (substitute === undefined ? undefined : inFlight.get(substitute));
    if (flying) return flying;
    const counted = planned?.get(key) ?? (substitute === undefined ? undefined : planned?.get(substitute));
    return counted && { call: counted };
  };

  const cache: LinkStructureCache = {
    load(asked, observe, planned, gone) {
      const request = canonical(asked);
      const report = (outcome: CacheOutcome) => {
        options.onLookup?.(outcome);
        observe?.(outcome);
      };
      const key = linkStructureRequestKey(request);
      /**
       * After a failed call: the expired copy kept for `key`, marked stale, if there is one; else the one the shared level
       * read and passed up with an unusable answer (`expiredCopy`), while it lasts; else the failure.
       */
      const staleOr = (forKey: string, error: unknown): LinkStructure => {
        if (error instanceof CallAbandoned) throw error; // for nobody: no stale serve to count
        const entry = entries?.peek(forKey);
        const own = entry && usable(entry) ? entry.value : undefined;
        const copy = own ?? passedUpCopy(error);
        if (staleMs > 0 && copy) {
          if (own === undefined && error instanceof UpstreamError && !copiesServed.has(error)) {
            copiesServed.add(error);
            options.onExpiredCopyServed?.();
          }
          report('stale');
          return { ...copy, stale: true };
        }
        throw error;
      };
      const substitute = substituteKey(request);
      const cached = freshEntry(key, substitute, Date.now());
      if (cached) {
        if (cached.fromShared) {
          // Put there moments ago by the cost check's Redis read: for the metrics an in-memory miss Redis answered,
          // as when the load reads Redis itself, so hits + misses + joins still counts every lookup.
          report('miss');
          report('redis');
          cached.fromShared = false;
        } else {
          report('hit');
        }
        return Promise.resolve(cached.value);
      }
      const known = unusableAnswer(key, Date.now());
      if (known) {
        // Answered from memory, without a call: the failure the upstream's last answer was, or the expired copy it would
        // have fallen back to. Put there by the cost check's Redis read: a miss that made no call, as when the load reads
        // Redis itself.
        report(known.fromShared ? 'miss' : 'hit');
        known.fromShared = false;
        return new Promise<LinkStructure>((resolve) => resolve(staleOr(key, known.error)));
      }
      const pending = pendingCall(key, substitute, planned);
      if (pending) {
        pending.askers?.add(gone);
        // A join is reported once the call has ended for this load: one given up (below) is no join, and the load made
        // instead reports its own outcome, so that each lookup counts once.
        return pending.call.then(
          (value) => {
            report('join');
            // Served stale too when the call it joined ended in an expired copy: counted per answer, as the leader's is.
            if (value.stale) report('stale');
            return value;
          },
          // A call joined for the substitute's sake fell back to the substitute's copy, if any: this request's own
          // expired copy still does for it (a call for its own key has already tried that). A call given up because
          // its askers had gone, when this one counted on it (a join the cost check planned): this one makes its own.
          (error: unknown) => {
            if (error instanceof CallAbandoned) return cache.load(asked, observe, undefined, gone);
            report('join');
            return staleOr(key, error);
          },
        );
      }
      report('miss');
      let sourced = false;
      const via = (source: FetchSource) => {
        // Each request sent is the asking request's to account for (not the metrics': they count attempts themselves).
        if (source === 'upstream') observe?.('attempt');
        // Once per call, however many attempts or steps it took.
        if (sourced) return;
        sourced = true;
        report(source);
      };
      const callers = new Askers();
      callers.add(gone);
      const call = options
        .fetch(request, via, callers)
        .then(
          (value) => {
            // The shared (Redis) level already fell back to its own expired copy: serve it, keep nothing.
            if (value.stale) {
              report('stale');
              return value;
            }
            // Fresh for what is left of the TTL since the upstream answered: a value another replica
            // fetched (through Redis) is already part-way through it. Kept under the key it was asked by (where the
            // stale fallback looks) and under the request it answers: a call made with acceptCache while v1 answered,
            // re-sent to gw once v1 was gone, answers the key requests use now.
            const entry = { value, freshUntil: value.fetchedAt.getTime() + options.ttlMs };
            entries?.set(key, entry);
            unusable?.delete(key);
            const answeredKey = linkStructureRequestKey(answered(request, value));
            if (answeredKey !== key) entries?.set(answeredKey, entry);
            return value;
          },
          (error: unknown) => {
            if (isUnusableAnswer(error)) rememberUnusable(key, error);
            return staleOr(key, error);
          },
        )
        .finally(() => {
          inFlight.delete(key);
          callers.dispose();
        });
      inFlight.set(key, { call, askers: callers });
      return call;
    },
    peek(asked) {
      const request = canonical(asked);
      const key = linkStructureRequestKey(request);
      const substitute = substituteKey(request);
      const now = Date.now();
      // An unusable answer remembered is as good as a fresh one for what a load would cost: no call.
      if (freshEntry(key, substitute, now, true) || unusableAnswer(key, now)) return 'fresh';
      if (pendingCall(key, substitute, undefined)) return 'in-flight';
      return usable(entries?.peek(key), now) ? 'stale' : 'absent';
    },
    answersWithFailure(asked) {
      const request = canonical(asked);
      const key = linkStructureRequestKey(request);
      const now = Date.now();
      if (!unusableAnswer(key, now) || freshEntry(key, substituteKey(request), now, true)) return false;
      return !usable(entries?.peek(key), now);
    },
    upstreamCallsFor(asked, planned) {
      const distinct = new Map(asked.map((request) => canonical(request)).map((request) => [linkStructureRequestKey(request), request]));
      const neededNow = () => {
        const now = Date.now();
        const needed: LinkStructureRequest[] = [];
        for (const [key, request] of distinct) {
          const substitute = substituteKey(request);
          if (freshEntry(key, substitute, now + planMarginMs, true) || unusableAnswer(key, now + planMarginMs)) continue;
          const pending = pendingCall(key, substitute, planned);
          if (!pending) needed.push(request);
          else planned?.set(key, pending.call);
        }
        return needed;
      };
      const needed = neededNow();
      // Without a memory to take answers into, a load would read Redis again: a second chance to find nothing.
      if (needed.length === 0 || !options.peekShared || !entries) return needed.length;
      // Counted again once Redis has answered, an answer may have expired meanwhile; a call counted free because it
      // was in flight stays free even if it has settled since: it is in `planned`, for the loads to join.
      return options.peekShared(needed, planMarginMs).then(
        (found) => {
          found.forEach((value, index) => {
            if (!value) return;
            const key = linkStructureRequestKey(needed[index]!);
            if (value instanceof UpstreamError) rememberUnusable(key, value, true);
            else entries.set(key, { value, freshUntil: value.fetchedAt.getTime() + options.ttlMs, fromShared: true });
          });
          return neededNow().length;
        },
        () => neededNow().length,
      );
    },
    get size() {
      return entries?.size ?? 0;
    },
    clear() {
      entries?.clear();
      unusable?.clear();
    },
  };
  return cache;
}

/**
 * The requests waiting on one call, as the call's `CallInterest`: `lost` aborts when the last of them has gone (or
 * the first was gone already). One that cannot go (no signal: tests, internal reads) keeps the call wanted for good.
 */
class Askers implements CallInterest {
  #present = 0;
  #kept = false;
  #lost = new AbortController();
  readonly #listening: Array<[AbortSignal, () => void]> = [];

  get lost(): AbortSignal {
    return this.#lost.signal;
  }

  add(gone: AbortSignal | undefined): void {
    if (gone === undefined) {
      this.#kept = true;
      return;
    }
    if (gone.aborted) {
      this.#leftIfEmpty();
      return;
    }
    this.#present += 1;
    // Interest lost and found again before the call gave up: the next look at `lost` sees it renewed.
    if (this.#lost.signal.aborted) this.#lost = new AbortController();
    const left = () => {
      this.#present -= 1;
      this.#leftIfEmpty();
    };
    gone.addEventListener('abort', left, { once: true });
    this.#listening.push([gone, left]);
  }

  /** Once the call has settled: a request signal may outlive it (a caller's own, long-lived), and so would listeners. */
  dispose(): void {
    for (const [signal, left] of this.#listening.splice(0)) signal.removeEventListener('abort', left);
  }

  #leftIfEmpty(): void {
    if (this.#present === 0 && !this.#kept) this.#lost.abort();
  }
}
