import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { errorCatalog, type ErrorCode } from '../errors.js';
import type { Logger } from '../logger.js';
import { CallAbandoned, CallCutOff, UpstreamError, isUnusableAnswer } from '../upstream/upstream-error.js';
import type { CallInterest, FetchSource, LinkStructureFetch } from './link-structure-cache.js';
import { creatorPlatforms, linkStructureRequestKey, linkStructureSchema, type LinkStructure, type LinkStructureRequest } from './model.js';

/** A shared answer; `stale` when it is past its TTL and served only because the upstream failed. */
export type SharedLinkStructure = LinkStructure & { stale?: boolean };

/** `disabled`: no REDIS_URL. `down`: Redis unreachable, slow or failing; the gateway answers without it. */
export type RedisStatus = 'ready' | 'down' | 'disabled';

export const sharedTierEvents = [
  /** A fresh answer, or an unusable answer remembered, read from Redis: no upstream call. */
  'redis_hit',
  /** Nothing usable in Redis (absent, expired, stale, corrupt or foreign). */
  'redis_miss',
  /** A Redis command failed or timed out. */
  'redis_error',
  /** Redis was skipped (down, or failing recently): straight to the upstream. */
  'redis_bypass',
  /** Another replica held the lock for this creator: waited for its answer. */
  'lock_wait',
  /** A lock holder vanished (its lock expired, or was released at its shutdown, unfilled): this replica took over the call. */
  'lock_takeover',
  /**
   * The upstream failed (or an unusable answer is remembered) and an answer past its TTL, within CACHE_STALE_SECONDS, read
   * from Redis was served instead: once per read served it. One passed up with an unusable answer (`expiredCopy`) is
   * counted when the in-process cache serves it (`expiredCopyServed`): only then is it served, if at all.
   */
  'stale_served',
] as const;
export type SharedTierEvent = (typeof sharedTierEvents)[number];

export interface SharedTierOptions {
  /** Owned by the tier from now on: closed by close(). A second connection is opened from it for pub/sub. */
  redis: Redis;
  /** Namespace (and format version) of every key and channel, e.g. `xingtu-gw:v1:`. */
  prefix: string;
  /** An answer younger than this is served as fresh. */
  ttlMs: number;
  /** How long past ttlMs an answer is kept, to be served only when the upstream fails. */
  staleMs: number;
  /** Expiry of a fill lock; the holder renews it while its call runs, so this bounds a dead holder's hold. */
  lockTtlMs: number;
  /**
   * Longest a replica waits for another's upstream call before calling the upstream itself: counted from when
   * the holder announces a request it sends (each attempt: it may first queue for a slot or wait out a 302 pause),
   * or from when this replica started waiting, whichever is later; so a waiter gives up at most this long after
   * starting, or after the holder's latest send.
   */
  waitTimeoutMs: number;
  /** How often a waiter re-checks Redis, in case it missed the fill message or the holder died. */
  pollMs?: number;
  /**
   * How long a waiter goes on waiting for another replica's call while Redis answers nothing (neither a command of this
   * replica's nor a message on the fill channel), counted from the first command left unanswered, or from the last answer
   * or message after it: past it Redis is down rather than slow (the holder can
   * neither renew its lock nor announce its answer), and the waiter calls the upstream itself. At least twice `cooldownMs`,
   * so that a waiter tries Redis again after the pause that follows a failure; at most, and by default, `lockTtlMs`.
   */
  redisSilenceMs?: number;
  /**
   * After a failed command, Redis is skipped this long (unless the connection comes back first); while it is
   * marked down, a PING probes it this often, so the status recovers without waiting for a request.
   */
  cooldownMs?: number;
  logger: Logger;
  /** The upstream call a miss makes; it reports `via('upstream')` when it really sent a request. */
  fetch: LinkStructureFetch;
  /** The request an answer answers, by the endpoint that gave it: the answer is stored under its key too. */
  answered?: (request: LinkStructureRequest, answer: LinkStructure) => LinkStructureRequest;
  /** Observes what the tier did (metrics). */
  onEvent?: (event: SharedTierEvent) => void;
}

export interface SharedTier {
  /**
   * Same contract as the upstream client's fetch: an answer, or the upstream's error, never a Redis error.
   * `via` learns where the answer came from: Redis, another replica's call, or (through the upstream fetch) the upstream.
   */
  fetch(request: LinkStructureRequest, via?: (source: FetchSource) => void, interest?: CallInterest): Promise<SharedLinkStructure>;
  /**
   * For each request, the answer Redis holds that stays fresh for at least `minFreshMs` more, else the unusable answer it
   * remembers that long (`isUnusableAnswer`, with its `rememberedUntil`, and its `expiredCopy` if Redis holds one), else
   * undefined (one round trip, bounded by the command timeout): what an operation will get without an upstream call.
   * Undefined for every request while Redis is down or skipped.
   */
  peekFresh(requests: readonly LinkStructureRequest[], minFreshMs: number): Promise<Array<LinkStructure | UpstreamError | undefined>>;
  readonly status: Exclude<RedisStatus, 'disabled'>;
  /**
   * Resolves true once the connection is ready (at once if it is), false after `timeoutMs`, as soon as `until` aborts,
   * or when the tier closes. Whatever ends it, it leaves no timer or listener behind.
   */
  whenReady(timeoutMs: number, until?: AbortSignal): Promise<boolean>;
  /**
   * The in-process cache served an expired copy this tier passed up with an unusable answer (`expiredCopy`, from `fetch` or
   * `peekFresh`): counted as `stale_served`. Once per copy passed up; this tier cannot tell whether, or how often, it will be.
   */
  expiredCopyServed(): void;
  /** How often each event happened since start. */
  readonly counters: Readonly<Record<SharedTierEvent, number>>;
  close(): Promise<void>;
}

const entryVersion = 1;
const entryVersionSchema = z.object({ v: z.number() });
/** What is stored under a link key: versioned, so a future format is a miss rather than a misread. */
const entrySchema = z.object({
  v: z.literal(entryVersion),
  /** Epoch ms when the answer was stored; freshness is measured from here. */
  storedAt: z.number(),
  value: linkStructureSchema,
});
type Entry = z.infer<typeof entrySchema>;

const errorCodes = Object.keys(errorCatalog) as [ErrorCode, ...ErrorCode[]];

/**
 * What is stored under an unusable-answer key: an answer the upstream served for this request that cannot be used
 * (`isUnusableAnswer`), remembered for the TTL so that no replica pays for it again. Under a key of its own, apart from the
 * answer's: the expired copy stored there is still served meanwhile, and replicas of an older release never see it.
 */
const unusableEntrySchema = z.object({
  v: z.literal(entryVersion),
  /** Epoch ms when the upstream gave it; it is remembered for the TTL from here. */
  storedAt: z.number(),
  kolId: z.string(),
  platform: z.enum(creatorPlatforms),
  code: z.enum(errorCodes),
  upstreamCode: z.number().optional(),
});
type UnusableEntry = z.infer<typeof unusableEntrySchema>;

/**
 * Published on the fill channel when a lock holder's call ends, so waiters need not poll. A failure carries what a
 * waiter's in-process cache needs to treat it as the holder's does: `accountServed` marks an answer paid for that cannot
 * be used, which is remembered rather than paid for again. Optional, and unknown keys are dropped on parsing, so replicas
 * of an older release and of this one read each other's messages.
 */
const fillMessageSchema = z.discriminatedUnion('ok', [
  z.object({ key: z.string(), ok: z.literal(true), entry: entrySchema }),
  z.object({
    key: z.string(),
    ok: z.literal(false),
    code: z.enum(errorCodes),
    upstreamCode: z.number().optional(),
    accountServed: z.boolean().optional(),
  }),
]);
type FillMessage = z.infer<typeof fillMessageSchema>;
/** A request of the holder's has left for the upstream (it may have queued for a slot before): waiters' clocks restart. */
const sendingMessageSchema = z.object({ key: z.string(), sending: z.literal(true) });
const channelMessageSchema = z.union([fillMessageSchema, sendingMessageSchema]);
type ChannelMessage = z.infer<typeof channelMessageSchema>;

// Delete or extend the lock only while it still holds our token: after an expiry it may be another replica's.
const releaseLockScript = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const renewLockScript = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;
/**
 * A lock attempt again after one that got no reply, with the same token: that one may have been applied late, and the lock
 * it set is ours (OK, its expiry renewed). SET NX alone answers nil to a lock that is already ours, and the replica waited it out.
 */
const retakeLockScript = `if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('pexpire', KEYS[1], ARGV[2]) return 'OK' end return redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX')`;

/**
 * How far a value under a link key is read, and the longest entry stored: a real entry is under a kilobyte. A value of tens
 * of megabytes under a creator's key (another tool sharing the prefix, a bad write) would otherwise take longer to read
 * than REDIS_TIMEOUT_MS allows, every time, and never be replaced: read this far only, a longer value is unreadable like
 * any other, and the next answer overwrites it. An answer whose entry would be longer is not stored (it would not read back).
 */
const maxEntryBytes = 64 * 1024;

/** A Redis failure, kept apart from upstream failures: it sends the request straight to the upstream. */
class RedisUnavailable extends Error {
  override name = 'RedisUnavailable';
}

const logIntervalMs = 10_000;
/** Longest close() waits for fills still running to announce their outcome and release their locks. */
const closeWaitForFillsMs = 1_000;
/** How far ahead of this replica's clock another replica's may run before the entries it stores are refused. */
const maxClockSkewMs = 60_000;

type Via = (source: FetchSource) => void;
/** What another replica's call came to, as its fill message tells it or as it left it in Redis. */
type Outcome = { value: LinkStructure } | { error: UpstreamError };
/** A request's keys in Redis: its answer's, and that of an unusable answer remembered for it. */
interface RequestKeys {
  link: string;
  unusable: string;
}
/** What Redis holds for a request that can answer it: its answer (fresh, or an expired copy), an unusable answer remembered. */
interface Held {
  entry: Entry | undefined;
  unusable: UpstreamError | undefined;
}

/**
 * The cache level shared by every replica, between the in-process cache and the upstream client:
 * Redis read → (miss) one replica takes a lock and calls the upstream while the others wait for its
 * answer → Redis write with TTL + stale grace → publish. Any Redis trouble sends the request straight
 * to the upstream, as if Redis were not configured, and never reaches a GraphQL response.
 */
export function createSharedTier(options: SharedTierOptions): SharedTier {
  const { redis, prefix, logger } = options;
  // Pub/sub ignores SELECT: deployments on one server kept apart by database number alone would hear each other's
  // fills (another account's answers, or a simulator's). Database 0 keeps the plain name, so replicas of an older
  // release in a rolling deploy still hear this one.
  const database = Number(redis.options.db ?? 0);
  const channel = database === 0 ? `${prefix}filled` : `${prefix}filled:db${database}`;
  const pollMs = options.pollMs ?? Math.max(50, Math.min(250, Math.floor(options.lockTtlMs / 4)));
  const cooldownMs = options.cooldownMs ?? 1_000;
  const redisSilenceMs = Math.min(options.lockTtlMs, Math.max(2 * cooldownMs, options.redisSilenceMs ?? options.lockTtlMs));
  const counters = Object.fromEntries(sharedTierEvents.map((event) => [event, 0])) as Record<SharedTierEvent, number>;
  const emit = (event: SharedTierEvent) => {
    counters[event] += 1;
    options.onEvent?.(event);
  };

  // One warning per kind of trouble per interval, with how many were left out: Redis being down must not flood the log.
  // The kind is the message, refined by `kind` where one message covers several troubles.
  const lastLogged = new Map<string, { at: number; suppressed: number }>();
  const warnLimited = (message: string, fields: Record<string, unknown> = {}, kind = '') => {
    const now = Date.now();
    const seen = lastLogged.get(`${message}\n${kind}`);
    if (seen && now - seen.at < logIntervalMs) {
      seen.suppressed += 1;
      return;
    }
    lastLogged.set(`${message}\n${kind}`, { at: now, suppressed: 0 });
    logger.warn(message, { ...fields, ...(seen?.suppressed ? { suppressed: seen.suppressed } : {}) });
  };

  let failing = false;
  let skipUntil = 0;
  // Fills running now (this replica holds their locks), for close().
  let filling = 0;
  const fillsEnded: Array<() => void> = [];
  let closed = false;
  // Aborted as close() begins (`closed` is set only once the fills have ended): nobody waits for a connection then.
  const closing = new AbortController();
  // A timed-out command leaves the connection up, so no 'ready' event will clear `failing`; without this
  // probe, /ready and /metrics would say "down" until some request happened to try Redis again.
  let probe: NodeJS.Timeout | undefined;
  const stopProbe = () => {
    clearTimeout(probe);
    probe = undefined;
  };
  const scheduleProbe = () => {
    if (probe || closed) return;
    const timer = setTimeout(async () => {
      // Not connected: the client is reconnecting, and its 'ready' event will mark Redis healthy.
      const answered = connectionUp() && (await redis.ping().then(() => true, () => false));
      // Stopped meanwhile: healthy again, or closed.
      if (probe !== timer) return;
      probe = undefined;
      if (answered) markHealthy();
      else if (failing) scheduleProbe();
    }, cooldownMs);
    timer.unref();
    probe = timer;
  };
  const markFailing = (cause: unknown) => {
    emit('redis_error');
    if (!failing) logger.warn('shared cache down: answering from this process and the upstream', { error: errorText(cause) });
    failing = true;
    skipUntil = Date.now() + cooldownMs;
    scheduleProbe();
  };
  /**
   * When Redis last showed it is there: a command of this replica's answered (the probe's PING too), or a message heard
   * on the fill channel. A waiter counts Redis silent only from then (see `redisSilenceMs`): its own commands timing out
   * while Redis answers others is a slow Redis, whose fill message still comes.
   */
  let lastHeardAt = 0;
  const markHealthy = () => {
    lastHeardAt = Date.now();
    if (failing) logger.info('shared cache back');
    failing = false;
    skipUntil = 0;
    stopProbe();
  };
  const connectionUp = () => redis.status === 'ready';
  const skipRedis = () => closed || !connectionUp() || (failing && Date.now() < skipUntil);

  let connected = false;
  redis.on('error', (error: unknown) => warnLimited('redis connection error', { error: errorText(error) }));
  redis.on('ready', () => {
    connected = true;
    logger.info('redis connected');
    markHealthy();
  });
  redis.on('close', () => {
    if (connected && !closed) logger.warn('redis connection lost: answering without the shared cache until it is back');
    connected = false;
  });

  // Subscriber mode takes a connection of its own.
  const subscriber = redis.duplicate({
    connectionName: `${redis.options.connectionName ?? 'xingtu-gateway'}-sub`,
    autoResubscribe: false,
  });
  subscriber.on('error', (error: unknown) => warnLimited('redis subscriber connection error', { error: errorText(error) }));
  // Subscribed on every (re)connection; until then waiters fall back to polling.
  subscriber.on('ready', () => {
    subscriber.subscribe(channel).catch((error: unknown) => warnLimited('redis subscribe failed', { error: errorText(error) }));
  });
  const waiters = new Map<string, Set<(message: ChannelMessage) => void>>();
  subscriber.on('message', (_channel: string, text: string) => {
    lastHeardAt = Date.now();
    let key: unknown;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
      key = (parsed as { key?: unknown }).key;
    } catch {
      return;
    }
    const listeners = typeof key === 'string' ? waiters.get(key) : undefined;
    if (!listeners) return;
    const message = channelMessageSchema.safeParse(parsed);
    if (!message.success) return;
    for (const listener of listeners) listener(message.data);
  });

  /** Runs one Redis command; a failure marks Redis as failing and becomes RedisUnavailable. */
  async function command<T>(run: () => Promise<T>): Promise<T> {
    try {
      const result = await run();
      markHealthy();
      return result;
    } catch (cause) {
      markFailing(cause);
      throw new RedisUnavailable(errorText(cause), { cause });
    }
  }

  const keysOf = (request: LinkStructureRequest): RequestKeys => {
    const id = linkStructureRequestKey(request);
    return { link: `${prefix}link:${id}`, unusable: `${prefix}unusable:${id}` };
  };

  /** Best effort: a failure is counted and logged, and the caller carries on. */
  const attempt = (run: () => Promise<unknown>) => command(run).catch(() => undefined);

  /**
   * The first bytes under each key, one past `maxEntryBytes` at most (GETRANGE: an absent key reads as empty; MGET would
   * read a huge value whole), in one round trip; 'wrong type' for another type of value under a key (Redis answered, so it
   * is up: that value is just not ours, the others are read).
   */
  const readAll = (keys: readonly string[]) =>
    command(async () => {
      const pipeline = redis.pipeline();
      for (const key of keys) pipeline.getrangeBuffer(key, 0, maxEntryBytes);
      const replies = (await pipeline.exec()) ?? [];
      return keys.map((_key, index) => {
        const [error, value] = replies[index] ?? [new Error('no reply')];
        if (isWrongType(error)) return 'wrong type' as const;
        if (error) throw error;
        return value as Buffer;
      });
    });

  /** What Redis holds for `request`, read in one round trip. */
  async function read(request: LinkStructureRequest): Promise<Held> {
    const keys = keysOf(request);
    return held(request, keys, await readAll([keys.link, keys.unusable]));
  }

  /** What the values read under `keys` (the answer's, then the unusable answer's) hold that can answer `request`. */
  function held(request: LinkStructureRequest, keys: RequestKeys, [link, unusable]: ReadonlyArray<Buffer | 'wrong type'>): Held {
    const stored = link && parseStored(keys.link, link, entrySchema, 'a link-structure entry');
    const entry = stored && usableEntry(keys.link, stored, request);
    // A fresh answer is served whatever else Redis holds (stored since by a replica of an older release, say).
    if (entry && isFresh(entry)) return { entry, unusable: undefined };
    const remembered = unusable && parseStored(keys.unusable, unusable, unusableEntrySchema, 'an unusable-answer entry');
    return { entry, unusable: remembered && rememberedFailure(keys.unusable, remembered, request) };
  }

  /**
   * A value read from Redis, if it is `kind` ("a link-structure entry") in this format version (else why not is logged);
   * undefined if absent.
   */
  function parseStored<T>(key: string, bytes: Buffer | 'wrong type', schema: z.ZodType<T>, kind: string): T | undefined {
    if (bytes === 'wrong type') return unreadable(key, 'not a string');
    // Absent (or empty, which no entry is).
    if (bytes.length === 0) return undefined;
    if (bytes.length > maxEntryBytes) return unreadable(key, `longer than ${maxEntryBytes} bytes`);
    const text = bytes.toString('utf8');
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return unreadable(key, 'not JSON');
    }
    // The version first: another format may differ anywhere, and should be reported as what it is.
    const version = entryVersionSchema.safeParse(json);
    if (!version.success) return unreadable(key, `not ${kind}`);
    if (version.data.v !== entryVersion) return unreadable(key, `format version ${version.data.v}, not ${entryVersion}`);
    const parsed = schema.safeParse(json);
    if (!parsed.success) return unreadable(key, `not ${kind}: invalid ${parsed.error.issues[0]?.path.join('.')}`);
    return parsed.data;
  }

  /** Why something stored for `kolId` on `platform` at `storedAt` cannot answer `request`, if it cannot. */
  function unfitFor(stored: { kolId: string; platform: string }, storedAt: number, request: LinkStructureRequest): string | undefined {
    if (stored.kolId !== request.kolId) return 'another creator’s entry';
    if (stored.platform !== request.platform) return 'another platform’s entry';
    // Stored "later" than now by more than any replica's clock could be off: it would be served past its TTL.
    if (storedAt > Date.now() + maxClockSkewMs) return 'stored in the future';
    return undefined;
  }

  /** An entry, from Redis or from a fill message, if it can answer `request` (else why not is logged). */
  function usableEntry(key: string, entry: Entry, request: LinkStructureRequest): Entry | undefined {
    // Fetched "later" than now, it would stay fresh past its TTL in the in-process cache (from fetchedAt) too.
    const unfit =
      unfitFor(entry.value, entry.storedAt, request) ??
      (entry.value.fetchedAt.getTime() > Date.now() + maxClockSkewMs ? 'fetched in the future' : undefined);
    if (unfit) return unreadable(key, unfit);
    // Only this replica decides whether what it serves is stale; the flag is never stored by a replica.
    const { stale: _stale, ...value } = entry.value;
    return { ...entry, value };
  }

  /**
   * An unusable answer remembered in Redis, as the error the replica that paid for it serves, until it would forget it
   * (else undefined; why, if it cannot answer `request`, is logged).
   */
  function rememberedFailure(key: string, stored: UnusableEntry, request: LinkStructureRequest): UpstreamError | undefined {
    const unfit = unfitFor(stored, stored.storedAt, request);
    if (unfit) return unreadable(key, unfit);
    const error = new UpstreamError(stored.code, 'an unusable answer another replica paid for, remembered in Redis', {
      upstreamCode: stored.upstreamCode,
      accountServed: true,
    });
    // Only a failure the upstream would give again is remembered: any other (one that may not happen again) is a miss.
    if (!isUnusableAnswer(error)) return unreadable(key, `${stored.code} is not an unusable answer`);
    error.rememberedUntil = stored.storedAt + options.ttlMs;
    return Date.now() < error.rememberedUntil ? error : undefined;
  }

  function unreadable(key: string, reason: string): undefined {
    // The key's name is ours and safe to log; the value is not logged (it could be anything), only where our schema rejects it.
    warnLimited('ignoring an unreadable shared cache entry', { key, reason }, reason);
    return undefined;
  }

  const ageMs = (entry: Entry) => Date.now() - entry.storedAt;
  const isFresh = (entry: Entry) => ageMs(entry) < options.ttlMs;
  const isUsableStale = (entry: Entry) => options.ttlMs > 0 && ageMs(entry) < options.ttlMs + options.staleMs;

  function serveStale(stale: LinkStructure, error: unknown): SharedLinkStructure {
    // One line per 10 s, as for Redis trouble: in an outage every request for a known creator comes this way (the
    // `stale_served` event counts them all).
    warnLimited('upstream failed: serving an answer past its TTL', {
      kolId: stale.kolId,
      fetchedAt: stale.fetchedAt,
      code: error instanceof UpstreamError ? error.code : undefined,
    });
    // An unusable paid answer is passed up with the copy: the in-process cache remembers it (asked again, the upstream
    // would give the same, paid again) and serves the copy meanwhile. Served here, it would be forgotten at once. Not
    // counted here: the in-process cache may serve a copy of its own instead, and counts this one when it serves it
    // (`expiredCopyServed`), as it does the copy the cost check's read passes up (see peekFresh).
    if (isUnusableAnswer(error)) {
      error.expiredCopy = stale;
      throw error;
    }
    emit('stale_served');
    return { ...stale, stale: true };
  }

  /** The upstream alone, as without Redis; a stale answer already read still covers a failure. */
  async function direct(request: LinkStructureRequest, stale: LinkStructure | undefined, via: Via, interest?: CallInterest): Promise<SharedLinkStructure> {
    try {
      return await options.fetch(request, via, interest);
    } catch (error) {
      if (stale && !(error instanceof CallAbandoned)) return serveStale(stale, error);
      throw error;
    }
  }

  /**
   * Listens for messages about `key` until stopped; each `wait` hands over the next one not yet handed over, or
   * undefined after `ms` without one. One listener for a whole wait, so nothing sent between two waits is lost.
   */
  function listen(key: string) {
    let deliver: ((message: ChannelMessage) => void) | undefined;
    const received: ChannelMessage[] = [];
    const listener = (message: ChannelMessage) => {
      if (deliver) deliver(message);
      else received.push(message);
    };
    const set = waiters.get(key) ?? new Set();
    set.add(listener);
    waiters.set(key, set);
    return {
      /** Also ends, with nothing, as soon as `until` aborts. */
      wait: (ms: number, until?: AbortSignal) =>
        new Promise<ChannelMessage | undefined>((resolve) => {
          const next = received.shift();
          if (next) return resolve(next);
          // Aborted already (while the lock was being tried): an aborted signal fires no more.
          if (until?.aborted) return resolve(undefined);
          const end = (message: ChannelMessage | undefined) => {
            deliver = undefined;
            clearTimeout(timer);
            until?.removeEventListener('abort', stop);
            resolve(message);
          };
          const stop = () => end(undefined);
          const timer = setTimeout(stop, ms);
          deliver = end;
          until?.addEventListener('abort', stop, { once: true });
        }),
      /**
       * The outcome (answer or failure) of a call already received and not yet handed over, if any, without waiting;
       * the `sending` messages before it are dropped (they only matter to a wait).
       */
      heard: (): FillMessage | undefined => {
        for (let next = received.shift(); next; next = received.shift()) if (!('sending' in next)) return next;
        return undefined;
      },
      stop: () => {
        set.delete(listener);
        if (set.size === 0 && waiters.get(key) === set) waiters.delete(key);
      },
    };
  }

  /**
   * Waits for best-effort bookkeeping (store, announce, release), unless Redis is marked failing: then it goes on in
   * the background (each command bounded by its timeout), and the answer does not wait for a Redis that is not there.
   */
  async function unlessFailing(bookkeeping: Promise<unknown>): Promise<void> {
    if (!skipRedis()) await bookkeeping;
  }

  /** Best effort: deletes the lock only while it holds `token`. */
  const releaseLock = (lockKey: string, token: string) => attempt(() => redis.eval(releaseLockScript, 1, lockKey, token));

  /** What a fill message tells a waiter: the holder's answer or its failure; undefined for an answer this replica cannot serve. */
  function outcomeOf(message: FillMessage, key: string, request: LinkStructureRequest): Outcome | undefined {
    if (message.ok) {
      // Checked as a stored entry is: what another replica announces may not be what this one can serve.
      const entry = usableEntry(key, message.entry, request);
      return entry && { value: entry.value };
    }
    const error = new UpstreamError(message.code, 'the upstream call another replica made for this creator failed', {
      upstreamCode: message.upstreamCode,
      accountServed: message.accountServed,
    });
    return { error };
  }

  /**
   * An answer from another replica's call: its value (reported as from `source`), or its failure (covered by an expired
   * copy, if there is one; a failure reports no source, as none answered).
   */
  function settle(outcome: Outcome, stale: LinkStructure | undefined, via: Via, source: FetchSource = 'replica'): SharedLinkStructure {
    if ('value' in outcome) {
      via(source);
      return outcome.value;
    }
    if (stale) return serveStale(stale, outcome.error);
    throw outcome.error;
  }

  /** What Redis holds that answers without a call: a fresh answer, else an unusable answer remembered. */
  function heldOutcome(found: Held): Outcome | undefined {
    if (found.entry && isFresh(found.entry)) return { value: found.entry.value };
    return found.unusable && { error: found.unusable };
  }

  /** This replica holds the lock: call the upstream once, store and announce the outcome, release. */
  async function fill(
    request: LinkStructureRequest,
    key: string,
    lockKey: string,
    token: string,
    stale: LinkStructure | undefined,
    via: Via,
  ): Promise<SharedLinkStructure> {
    filling += 1;
    const renew = setInterval(
      () => void attempt(() => redis.eval(renewLockScript, 1, lockKey, token, String(options.lockTtlMs))),
      Math.max(1, Math.floor(options.lockTtlMs / 3)),
    );
    renew.unref();
    const release = () => releaseLock(lockKey, token);
    try {
      // Another replica may have filled the key between our read and our lock. The lock is ours all the
      // same: released at once, or the others would wait on it, then take it over, until it expired.
      // Not while Redis is failing (the lock's reply timed out): the upstream call would wait for nothing.
      const current = skipRedis() ? undefined : await read(request).catch(() => undefined);
      const known = current && heldOutcome(current);
      if (known) {
        await release();
        return settle(known, stale, via, 'redis');
      }

      let value: LinkStructure;
      // Every request that goes out is announced, retries and the re-send to gw included: each may first have
      // queued for a slot or waited out a 302 pause, and a waiter's clock restarts with each.
      const sent: Via = (source) => {
        if (source === 'upstream') void attempt(() => redis.publish(channel, JSON.stringify({ key, sending: true } satisfies ChannelMessage)));
        via(source);
      };
      try {
        value = await options.fetch(request, sent);
      } catch (error) {
        if (error instanceof CallCutOff) {
          // This process is being shut down: the upstream did not fail. Not announced (the waiters would pass the cut-off
          // on to their clients as the upstream's failure); the lock is released, so one of them takes it over and calls.
          await unlessFailing(release());
          if (stale) return serveStale(stale, error);
          throw error;
        }
        const failure =
          error instanceof UpstreamError
            ? { key, ok: false as const, code: error.code, upstreamCode: error.upstreamCode, ...(error.accountServed ? { accountServed: true } : {}) }
            : { key, ok: false as const, code: 'UPSTREAM_BAD_RESPONSE' as const };
        // One the upstream would give again is remembered for the TTL, as every replica that hears of it remembers it, so
        // that a replica asking later does not pay for it again. Any other is not: it may not happen again.
        const remembered: UnusableEntry | undefined =
          isUnusableAnswer(error) && options.ttlMs > 0
            ? { v: entryVersion, storedAt: Date.now(), kolId: request.kolId, platform: request.platform, code: error.code, upstreamCode: error.upstreamCode }
            : undefined;
        // Sent back to back on one connection, so Redis stores before it announces and releases.
        await unlessFailing(
          Promise.all([
            ...(remembered ? [attempt(() => redis.set(keysOf(request).unusable, JSON.stringify(remembered), 'PX', options.ttlMs))] : []),
            attempt(() => redis.publish(channel, JSON.stringify(failure))),
            release(),
          ]),
        );
        if (stale) return serveStale(stale, error);
        throw error;
      }
      const entry: Entry = { v: entryVersion, storedAt: Date.now(), value };
      // CACHE_TTL_SECONDS=0 keeps nothing, stale grace or not: waiters still get the answer through the message.
      const keepMs = options.ttlMs > 0 ? options.ttlMs + options.staleMs : 0;
      // Under the key it was asked by (this lock's waiters read it there if they miss the message), and under the one of
      // the request it answers if that is another: a call made with acceptCache while v1 answered, re-sent to gw.
      const answeredKey = options.answered ? `${prefix}link:${linkStructureRequestKey(options.answered(request, value))}` : key;
      const stored = JSON.stringify(entry);
      // One that would not read back (a freak answer, far past any real one) is announced to the waiters, not stored.
      const storable = Buffer.byteLength(stored) <= maxEntryBytes;
      if (!storable) warnLimited('answer too large for the shared cache: announced, not stored', { kolId: request.kolId, maxEntryBytes });
      const keys = keepMs > 0 && storable ? [...new Set([key, answeredKey])] : [];
      // Sent back to back on one connection, so Redis stores before it announces and releases. An unusable answer remembered
      // for the request is forgotten, as in memory: this one answers it now (and one that could not be read goes).
      await unlessFailing(
        Promise.all([
          ...keys.map((storedKey) => attempt(() => redis.set(storedKey, stored, 'PX', keepMs))),
          attempt(() => redis.del(keysOf(request).unusable)),
          attempt(() => redis.publish(channel, JSON.stringify({ key, ok: true, entry } satisfies FillMessage))),
          release(),
        ]),
      );
      return value;
    } finally {
      clearInterval(renew);
      filling -= 1;
      if (filling === 0) for (const resolve of fillsEnded.splice(0)) resolve();
    }
  }

  /** Nothing fresh in Redis: take the lock and fill, or wait for the replica that has it. */
  async function fillOrWait(
    request: LinkStructureRequest,
    key: string,
    stale: LinkStructure | undefined,
    via: Via,
    interest: CallInterest | undefined,
  ): Promise<SharedLinkStructure> {
    const lockKey = `${prefix}lock:${linkStructureRequestKey(request)}`;
    let deadline = Date.now() + options.waitTimeoutMs;
    let waited = false;
    // While waiting: since when Redis has failed (since the failed command was sent) or been skipped, with no command
    // answered nor message heard since.
    let unansweredSince: number | undefined;
    // A lock attempt of this wait that got no reply: Redis may have set the lock with this token. Tried again with the same
    // token (so it becomes ours once free), and released when the wait ends without having filled.
    let maybeHeld: string | undefined;
    // Listening before trying the lock: a fill that ends right after our failed attempt is not missed.
    const fillMessage = listen(key);
    try {
      for (;;) {
        // Every request here that wanted the answer has gone: nothing to wait for, nor a reason to take over an expired
        // lock or to pay for a call of this replica's own (a holder's call goes on for the replicas waiting on it).
        if (interest?.lost.aborted) {
          logger.debug('stopped waiting for another replica’s upstream call: every request that wanted it has gone', { kolId: request.kolId });
          throw new CallAbandoned();
        }
        // Closing: Redis is going, and with it the answer this replica waits for.
        if (waited && closing.signal.aborted) return await direct(request, stale, via, interest);
        const token = maybeHeld ?? randomUUID();
        let acquired: string | null = null;
        // Once waiting, Redis trouble is no reason to pay for the call a live holder is making: while Redis is marked down
        // the wait goes on listening, without commands, and a lock attempt that fails is as one refused.
        if (waited && skipRedis()) {
          unansweredSince ??= Date.now();
        } else {
          const asked = Date.now();
          try {
            acquired = await command(() =>
              maybeHeld === undefined
                ? redis.set(lockKey, token, 'PX', options.lockTtlMs, 'NX')
                : (redis.eval(retakeLockScript, 1, lockKey, token, options.lockTtlMs) as Promise<string | null>),
            );
            unansweredSince = undefined;
          } catch (error) {
            if (!(error instanceof RedisUnavailable)) throw error;
            if (waited) {
              unansweredSince ??= asked;
              maybeHeld = token;
            } else {
              // No reply in time, yet Redis may have set the lock all the same. An outcome already received answers as
              // below (the lock released in the background: Redis is failing). Otherwise act as the lock's holder, as far
              // as Redis lets us: store and announce the answer and release the lock (only if it holds our token), so no
              // other replica waits it out and pays for this creator again.
              const known = heardOutcome(fillMessage, key, request);
              if (known) {
                await unlessFailing(releaseLock(lockKey, token));
                return settle(known, stale, via);
              }
              return await fill(request, key, lockKey, token, stale, via);
            }
          }
        }
        if (acquired === 'OK') {
          // fill() releases it from now on.
          maybeHeld = undefined;
          // The lock was free because a call for this creator has just ended, and its outcome may have reached us
          // already (we listen from before the first attempt): that is this request's answer, not a reason to pay again.
          // The lock is ours all the same: released at once, or the others would wait on it, then take it over.
          const known = heardOutcome(fillMessage, key, request);
          if (known) {
            await releaseLock(lockKey, token);
            return settle(known, stale, via);
          }
          if (waited) {
            emit('lock_takeover');
            logger.info('took over a fill lock its holder left unfilled (expired, or released at its shutdown)', { kolId: request.kolId });
          }
          return await fill(request, key, lockKey, token, stale, via);
        }
        if (!waited) emit('lock_wait');
        waited = true;
        const now = Date.now();
        // Redis answering nothing for `redisSilenceMs`: down, not slow. The holder can renew, store or announce nothing
        // either, and the wait would only delay this request. Anything Redis answered since (a command of another
        // request's, the probe's PING, another creator's fill message) restarts the count.
        const silentSince = unansweredSince === undefined ? undefined : Math.max(unansweredSince, lastHeardAt);
        const giveUpAt = silentSince === undefined ? deadline : Math.min(deadline, silentSince + redisSilenceMs);
        if (giveUpAt <= now) {
          const redisSilent = giveUpAt < deadline;
          warnLimited(
            'gave up waiting for another replica’s upstream call',
            { kolId: request.kolId, ...(redisSilent ? { reason: 'redis not answering' } : {}) },
            redisSilent ? 'redis' : '',
          );
          return await direct(request, stale, via, interest);
        }
        const message = await fillMessage.wait(Math.min(pollMs, giveUpAt - now), interest?.lost);
        if (message) unansweredSince = undefined;
        if (message && 'sending' in message) {
          // Its call has only now gone out: it may have queued behind others, which is no reason to pay twice.
          deadline = Math.max(deadline, Date.now() + options.waitTimeoutMs);
          continue;
        }
        if (message) {
          const outcome = outcomeOf(message, key, request);
          if (outcome) return settle(outcome, stale, via);
          continue;
        }
        // No message in time: the fill may have happened unannounced (subscriber down), or the holder died.
        if (skipRedis()) continue;
        let found: Held;
        const asked = Date.now();
        try {
          found = await read(request);
          unansweredSince = undefined;
        } catch (error) {
          if (!(error instanceof RedisUnavailable)) throw error;
          unansweredSince ??= asked;
          continue;
        }
        const known = heldOutcome(found);
        if (known) return settle(known, stale, via);
      }
    } finally {
      fillMessage.stop();
      if (maybeHeld) void releaseLock(lockKey, maybeHeld);
    }
  }

  /** The first outcome received and not handed over that this replica can use, if any (without waiting). */
  function heardOutcome(fillMessage: ReturnType<typeof listen>, key: string, request: LinkStructureRequest): Outcome | undefined {
    for (let message = fillMessage.heard(); message; message = fillMessage.heard()) {
      const outcome = outcomeOf(message, key, request);
      if (outcome) return outcome;
    }
    return undefined;
  }

  async function peekFresh(requests: readonly LinkStructureRequest[], minFreshMs: number): Promise<Array<LinkStructure | UpstreamError | undefined>> {
    const none = () => requests.map(() => undefined);
    if (requests.length === 0 || skipRedis()) return none();
    const keys = requests.map(keysOf);
    try {
      const values = await readAll(keys.flatMap(({ link, unusable }) => [link, unusable]));
      return requests.map((request, index) => {
        const found = held(request, keys[index]!, values.slice(2 * index, 2 * index + 2));
        const freshFor = (entry: Entry) => options.ttlMs - ageMs(entry);
        if (found.entry && freshFor(found.entry) > minFreshMs) {
          emit('redis_hit');
          return found.entry.value;
        }
        const failure = found.unusable;
        if (failure === undefined || failure.rememberedUntil! - Date.now() <= minFreshMs) return undefined;
        // Passed up with the expired copy a load would serve for it, as a load's own read does (see serveStale); counted
        // as `stale_served` once the in-process cache serves it, not now: the operation may never load it.
        if (found.entry && isUsableStale(found.entry)) failure.expiredCopy = found.entry.value;
        emit('redis_hit');
        return failure;
      });
    } catch {
      return none();
    }
  }

  /**
   * `interest` reaches the upstream call only where no other replica waits for it (Redis skipped or down, or a waiter
   * that gave up on the holder), and ends a wait nobody here needs any more: a fill lock's holder calls on whatever
   * becomes of its own requests, since other replicas' requests wait on its answer.
   */
  async function fetch(request: LinkStructureRequest, via: Via = () => {}, interest?: CallInterest): Promise<SharedLinkStructure> {
    if (skipRedis()) {
      emit('redis_bypass');
      return options.fetch(request, via, interest);
    }
    const key = keysOf(request).link;
    let stale: LinkStructure | undefined;
    try {
      const found = await read(request);
      if (found.entry && isUsableStale(found.entry)) stale = found.entry.value;
      const known = heldOutcome(found);
      if (known) {
        emit('redis_hit');
        return settle(known, stale, via, 'redis');
      }
      emit('redis_miss');
      return await fillOrWait(request, key, stale, via, interest);
    } catch (error) {
      if (error instanceof RedisUnavailable) return direct(request, stale, via, interest);
      throw error;
    }
  }

  function whenReady(timeoutMs: number, until?: AbortSignal): Promise<boolean> {
    if (connectionUp()) return Promise.resolve(true);
    if (until?.aborted || closing.signal.aborted) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const end = (ready: boolean) => {
        clearTimeout(timer);
        redis.off('ready', onReady);
        until?.removeEventListener('abort', onStop);
        closing.signal.removeEventListener('abort', onStop);
        resolve(ready);
      };
      const onReady = () => end(true);
      const onStop = () => end(false);
      const timer = setTimeout(onStop, timeoutMs);
      // Heard after the tier's own 'ready' listener, which has marked Redis healthy by then.
      redis.once('ready', onReady);
      until?.addEventListener('abort', onStop, { once: true });
      closing.signal.addEventListener('abort', onStop, { once: true });
    });
  }

  return {
    fetch,
    peekFresh,
    get status() {
      return connectionUp() && !failing ? 'ready' : 'down';
    },
    whenReady,
    expiredCopyServed: () => emit('stale_served'),
    counters,
    async close() {
      closing.abort();
      // Fills still running (their calls cut off by a forced shutdown) release their locks first, and announce any
      // other failure: otherwise other replicas wait those locks out before calling themselves.
      // A second at most: a fill whose call never ends must not hold close() forever.
      if (filling > 0) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          new Promise<void>((resolve) => fillsEnded.push(resolve)),
          new Promise<void>((resolve) => (timer = setTimeout(resolve, closeWaitForFillsMs))),
        ]);
        clearTimeout(timer);
      }
      closed = true;
      stopProbe();
      await Promise.all(
        [redis, subscriber].map((client) =>
          client.status === 'ready' ? client.quit().catch(() => client.disconnect()) : client.disconnect(),
        ),
      );
    },
  };
}

/** Redis refusing a command for the type of value under the key: it answered, so it is up. */
function isWrongType(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('WRONGTYPE');
}

/** An error's class and message only: ioredis errors carry no credentials, but their objects carry the whole command. */
function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
