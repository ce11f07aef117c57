import { createHash, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Plugin } from 'graphql-yoga';
import { codedError } from '../errors.js';

export interface ApiKeys {
  /** False when no key is configured: the gateway is open to anyone who can reach it. */
  readonly enabled: boolean;
  /**
   * Who sent the request: `key:<n>` for the n-th configured key (1-based, in GATEWAY_API_KEYS order), or
   * undefined when the request's key is missing or not one of the configured keys. It names the key without
   * telling anything about it: a digest prefix in a log line would let a reader test guesses offline.
   */
  identify(headers: Headers): string | undefined;
}

/**
 * Who a request is charged to and logged as: its API key's identity when the key is valid, else `ip:<TCP peer>`
 * (behind a proxy, the proxy's address); an IPv6 peer by its /64 network (`ip:2001:db8:1:2::/64`), which one
 * subscriber holds whole (`ip:::/64` for `::1`): one address each would give a single client 2^64 rate-limit buckets, and let it flush the
 * limiter's memory of every other client.
 */
export function clientOf(apiKeys: ApiKeys, headers: Headers, remoteAddress: string | undefined): string {
  const key = apiKeys.identify(headers);
  if (key) return key;
  if (remoteAddress === undefined) return 'ip:unknown';
  const network = remoteAddress.includes(':') ? ipv6Network(remoteAddress) : undefined;
  return `ip:${network ?? remoteAddress}`;
}

/**
 * The /64 network of an IPv6 address, written `a:b:c:d::/64`; undefined for an IPv4 address mapped into IPv6
 * (`::ffff:192.0.2.1`, as Node reports IPv4 peers on a dual-stack socket: kept whole, or every IPv4 client would be one)
 * and for anything that does not read as IPv6.
 */
function ipv6Network(address: string): string | undefined {
  const bare = address.split('%', 1)[0]!.toLowerCase(); // without a zone (`fe80::1%eth0`)
  if (bare.includes('.')) return undefined;
  const halves = bare.split('::');
  if (halves.length > 2) return undefined;
  const groupsOf = (half: string) => (half === '' ? [] : half.split(':'));
  const head = groupsOf(halves[0]!);
  const tail = halves.length === 2 ? groupsOf(halves[1]!) : [];
  const zeros = halves.length === 2 ? 8 - head.length - tail.length : 0;
  const groups = [...head, ...Array<string>(Math.max(zeros, 0)).fill('0'), ...tail];
  if (groups.length !== 8 || zeros < 0 || !groups.every((group) => /^[0-9a-f]{1,4}$/.test(group))) return undefined;
  // As the WHATWG URL parser writes an IPv6 host: lower case, no leading zeros, the longest run of zero groups as `::`.
  return `${new URL(`http://[${groups.slice(0, 4).join(':')}::]`).hostname.slice(1, -1)}/64`;
}

/** The socket a request came on, from Yoga's server context under `node:http` (or a GraphQL context, which extends it). */
export function requestSocket(context: unknown): Socket | undefined {
  return (context as { req?: { socket?: Socket } } | undefined)?.req?.socket;
}

/** The TCP peer's address of a request. */
export function peerAddress(context: unknown): string | undefined {
  return requestSocket(context)?.remoteAddress;
}

const digest = (key: string) => createHash('sha256').update(key).digest();

/**
 * The key a request presents: `Authorization: Bearer <key>`, else `x-api-key: <key>`.
 * A key is never logged or echoed, only compared.
 */
export function presentedApiKey(headers: Headers): string | undefined {
  const bearer = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(headers.get('authorization') ?? '');
  return bearer?.[1] ?? (headers.get('x-api-key')?.trim() || undefined);
}

/**
 * Keys are compared as SHA-256 digests with timingSafeEqual: equal lengths whatever the key, no
 * early exit on the first differing byte, and every configured key is compared, so the answer's
 * timing tells nothing about how close a guess was or which key it resembled.
 *
 * A key found valid is remembered by its text (at most one entry per configured key: nothing a client
 * sends can grow it), so a client's later requests skip the hashing, which cost ~30 µs of a cache miss's
 * time before its upstream call. Looking a guess up there tells nothing either: a string map compares
 * text only after full hashes match, and the hash of a guess says nothing about its closeness to a key.
 */
export function createApiKeys(keys: readonly string[]): ApiKeys {
  const digests = keys.map(digest);
  const known = new Map<string, string>();
  const check = (presented: string): string | undefined => {
    const remembered = known.get(presented);
    if (remembered !== undefined) return remembered;
    const candidate = digest(presented);
    let matched = -1;
    digests.forEach((configured, index) => {
      if (timingSafeEqual(candidate, configured)) matched = index;
    });
    if (matched === -1) return undefined;
    const identity = `key:${matched + 1}`;
    known.set(presented, identity);
    return identity;
  };
  return {
    enabled: digests.length > 0,
    identify(headers) {
      const presented = presentedApiKey(headers);
      return presented === undefined ? undefined : check(presented);
    },
  };
}

/**
 * Every GraphQL request needs a valid key when keys are configured: checked before the body is
 * read, so a request without one costs no parsing and no upstream call. Routes that are not
 * GraphQL requests (/health, /ready, the GraphiQL page and its assets) never reach this hook.
 */
export function useApiKeys(apiKeys: ApiKeys): Plugin {
  return {
    onRequestParse({ request }) {
      if (!apiKeys.enabled || apiKeys.identify(request.headers)) return;
      const missing = presentedApiKey(request.headers) === undefined;
      throw codedError('UNAUTHENTICATED', {
        ...(missing ? {} : { message: 'The API key is not valid.' }),
        http: { status: 401, headers: { 'www-authenticate': 'Bearer realm="xingtu-link-gateway"' } },
      });
    },
  };
}
