import { request as httpRequest, createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { getIntrospectionQuery, Lexer, parse, Source, TokenKind, type DocumentNode } from 'graphql';
import { describe, expect, it, vi } from 'vitest';
import { clientOf, createApiKeys } from '../src/protection/api-keys.js';
import { boundedParserCaches } from '../src/protection/document-cache.js';
import { countComments, repeatedFields, useCommentsCounted } from '../src/protection/query-limits.js';
import { reply } from './fake-upstream.js';
import { gatewayOnFakeUpstream, type TestGateway } from './gateway.js';
import { schema } from '../src/graphql/schema.js';

const setUp = (vars: Record<string, string> = {}) => gatewayOnFakeUpstream(vars);

const creatorsQuery = 'query ($ids: [ID!]!) { creators(kolIds: $ids) { kolId linkStructure { summary { value } } } }';

describe('query limits, refused before execution with a coded error', () => {
  it('MAX_QUERY_DEPTH → QUERY_TOO_DEEP (fragments do not count as levels)', async () => {
    const { upstream, gateway } = await setUp({ MAX_QUERY_DEPTH: '3' });
    const deep = await gateway.query('{ creator(kolId: "1") { linkStructure { buckets { value } } } }');
    expect(deep.status).toBe(400);
    expect(deep.body.data).toBeUndefined();
    expect(deep.body.errors).toEqual([
      { message: 'Query depth limit of 3 exceeded, found 4.', extensions: { code: 'QUERY_TOO_DEEP', retryable: false, limit: 3 } },
    ]);
    const shallow = await gateway.query(
      '{ creator(kolId: "1") { ...C } } fragment C on Creator { ... on Creator { linkStructure { fetchedAt } } }',
    );
    expect(shallow.body.errors).toBeUndefined();
    expect(upstream.calls()).toBe(1);
  });

  it('a chain of fragments that each spread the next twice is planned in linear time, within every limit', async () => {
    const { upstream, gateway } = await setUp();
    // 2^22 walks (about ten seconds here) before the planner remembered the fragments it had spread at a level.
    const links = 22;
    const fragments = Array.from({ length: links }, (_, index) => `fragment F${index} on Query { ...F${index + 1} ...F${index + 1} }`);
    const query = `query Chain { ...F0 } ${fragments.join(' ')} fragment F${links} on Query { creator(kolId: "7") { linkStructure { summary { value } } } }`;
    const started = performance.now();
    const { body } = await gateway.query(query);
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(body.errors).toBeUndefined();
    expect(body.data.creator.linkStructure.summary.value).toBe(9875885);
    expect(upstream.calls()).toBe(1);
  });

  it('copies of one field that each spread the next fragment are planned once per response key, as execution runs them', async () => {
    // 234 repeated fields (each copy's level collects the 40 of the fragment it spreads): MAX_REPEATED_FIELDS refuses
    // this document by default; raised, so the plan is what is tested.
    const { upstream, gateway } = await setUp({ MAX_REPEATED_FIELDS: '5000' });
    // 40 copies of one field per level, each spreading the next level's fragment: 40^4 field visits (about a second of
    // blocked event loop per request) when the planner walked every copy on its own; execution merges the copies and
    // spreads each fragment once. 3 KB, no alias, within every limit; a different (free) `creators` list each time
    // makes a new plan while the parsed and validated document is reused, and nothing is charged or rate limited.
    const copies = (text: string) => Array.from({ length: 40 }, () => text).join(' ');
    const query = `query Fan($ids: [ID!]!) { creators(kolIds: $ids) { kolId } ...R }
      fragment R on Query { ${copies('creator(kolId: "7") { ...C }')} }
      fragment C on Creator { ${copies('linkStructure { ...L }')} }
      fragment L on LinkStructure { ${copies('buckets { ...B }')} }
      fragment B on LinkBucket { ${copies('level')} }`;
    const first = await gateway.query(query, { ids: ['1'] });
    expect(first.body.errors).toBeUndefined();
    expect(first.body.data.creator.linkStructure.buckets).toHaveLength(4);
    const started = performance.now();
    for (const id of ['2', '3', '4']) {
      const { body } = await gateway.query(query, { ids: [id] });
      expect(body.data.creators).toEqual([{ kolId: id }]);
    }
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(upstream.calls()).toBe(1);
  });

  it('MAX_ALIASES → QUERY_TOO_MANY_ALIASES', async () => {
    const { upstream, gateway } = await setUp({ MAX_ALIASES: '2' });
    const { status, body } = await gateway.query(
      '{ a: creator(kolId: "1") { kolId } b: creator(kolId: "2") { kolId } c: creator(kolId: "3") { kolId linkStructure { fetchedAt } } }',
    );
    expect(status).toBe(400);
    expect(body.errors).toEqual([
      { message: 'Aliases limit of 2 exceeded, found 3.', extensions: { code: 'QUERY_TOO_MANY_ALIASES', retryable: false, limit: 2 } },
    ]);
    expect(upstream.calls()).toBe(0);
  });

  it('MAX_ALIASES counts __typename aliases too', async () => {
    const { gateway } = await setUp({ MAX_ALIASES: '2' });
    const { status, body } = await gateway.query('{ a: __typename b: __typename c: __typename }');
    expect(status).toBe(400);
    expect(body.errors).toEqual([
      { message: 'Aliases limit of 2 exceeded, found 3.', extensions: { code: 'QUERY_TOO_MANY_ALIASES', retryable: false, limit: 2 } },
    ]);
  });

  it('MAX_QUERY_TOKENS → QUERY_TOO_MANY_TOKENS, before the document is even parsed to the end', async () => {
    const { upstream, gateway } = await setUp({ MAX_QUERY_TOKENS: '40' });
    const ids = Array.from({ length: 40 }, (_, index) => `"${index + 1}"`).join(' ');
    const { status, body } = await gateway.query(`{ creators(kolIds: [${ids}]) { linkStructure { fetchedAt } } }`);
    expect(status).toBe(400);
    expect(body.errors).toEqual([
      { message: 'Token limit of 40 exceeded.', extensions: { code: 'QUERY_TOO_MANY_TOKENS', retryable: false, limit: 40 } },
    ]);
    expect(upstream.calls()).toBe(0);
  });

  it('MAX_QUERY_TOKENS counts comments too: a document keeps every one, so a body of empty comment lines is refused', async () => {
    const { upstream, gateway } = await setUp({ MAX_QUERY_TOKENS: '40' });
    const refused = { message: 'Token limit of 40 exceeded.', extensions: { code: 'QUERY_TOO_MANY_TOKENS', retryable: false, limit: 40 } };
    // `{ creator(kolId: "1") { kolId } }` is 11 tokens.
    const query = '{ creator(kolId: "1") { kolId } }';
    const withComments = (count: number) => `${'#\n'.repeat(count)}${query}`;
    expect((await gateway.query(withComments(29))).body.data).toEqual({ creator: { kolId: '1' } });
    // Counted once parsed: 30 comments and 11 other tokens.
    const over = await gateway.query(withComments(30));
    expect(over.status).toBe(400);
    expect(over.body.errors).toEqual([refused]);
    // Past the limit in comments alone: refused before parsing (below).
    const bomb = await gateway.query(withComments(15_000));
    expect(bomb.status).toBe(400);
    expect(bomb.body.errors).toEqual([refused]);
    expect(upstream.calls()).toBe(0);
  });

  it('refuses a document with more comments than the limit without parsing it', () => {
    const parseFn = vi.fn((source: string | Source) => parse(source));
    let wrapped: ((source: string | Source) => DocumentNode) | undefined;
    const hooks = useCommentsCounted(5) as { onParse: (payload: unknown) => void };
    hooks.onParse({ parseFn, setParseFn: (fn: typeof wrapped) => (wrapped = fn) });
    expect(() => wrapped!(`${'#\n'.repeat(6)}{ a }`)).toThrow('Token limit of 5 exceeded.');
    expect(parseFn).not.toHaveBeenCalled();
    expect(wrapped!('#\n{ a }').kind).toBe('Document');
    expect(parseFn).toHaveBeenCalledOnce();
  });

  it('counts as comments only the `#`s outside strings and block strings', () => {
    expect(countComments('{ a(b: "x # y") } # one', 10)).toBe(1);
    expect(countComments('{ a(b: """x # \\""" # y""") } # one\n# two', 10)).toBe(2);
    expect(countComments('{ a(b: "x \\" # y") } # one', 10)).toBe(1);
    // An escaped triple quote followed by a quote: the block string goes on.
    expect(countComments('{ a(b: """X\\""""\n#\n#\n""") } # one', 10)).toBe(1);
    // An unterminated string ends at its line: a comment on the next line still counts.
    expect(countComments('{ a(b: "x # \n# one', 10)).toBe(1);
    // Counting stops once past the limit.
    expect(countComments('#\n'.repeat(1_000), 5)).toBe(6);
  });

  it('counts comments as graphql-js’s lexer finds them, over 20,000 random sources it can read', () => {
    let seed = 42;
    const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
    // Quotes and backslashes often, so block strings, escaped triple quotes and an escaped one followed by a quote come up.
    const alphabet = ['"""', '"', '"', '\\', '\\"""', '#', '\n', '\r', '{', 'a', ' ', '}'];
    let compared = 0;
    for (let sample = 0; sample < 20_000; sample += 1) {
      const source = Array.from({ length: 4 + Math.floor(random() * 16) }, () => alphabet[Math.floor(random() * alphabet.length)]).join('');
      let lexed = 0;
      try {
        const lexer = new Lexer(new Source(source));
        let token = lexer.advance();
        while (token.kind !== TokenKind.EOF) token = lexer.advance();
        for (let each = lexer.token.prev; each; each = each.prev) if (each.kind === TokenKind.COMMENT) lexed += 1;
      } catch {
        continue; // not a source graphql-js can read: parsing refuses it anyway
      }
      compared += 1;
      expect(countComments(source, 1_000), JSON.stringify(source)).toBe(lexed);
    }
    expect(compared).toBeGreaterThan(2_000);
  });

  it('keeps parsed documents up to an estimated 64 MB, whatever their number', () => {
    const { documentCache } = boundedParserCaches();
    const document = { kind: 'Document', definitions: [] } as unknown as DocumentNode;
    // 2,000 distinct 20 KB documents: about 1.3 MB each by the estimate, 2.6 GB in all.
    for (let index = 0; index < 2_000; index += 1) documentCache.set(`${index}${' '.repeat(20_000)}`, document);
    expect(documentCache.calculatedSize).toBeLessThanOrEqual(64 * 1024 * 1024);
    expect(documentCache.size).toBeLessThan(60);
    // Small ones are kept up to Yoga's count.
    const small = boundedParserCaches().documentCache;
    for (let index = 0; index < 2_000; index += 1) small.set(`{ creator(kolId: "${index}") { kolId } }`, document);
    expect(small.size).toBe(1_024);
  });

  it('MAX_REQUEST_BYTES → HTTP 413 REQUEST_ENTITY_TOO_LARGE, with or without a Content-Length', async () => {
    const { upstream, gateway } = await setUp({ MAX_REQUEST_BYTES: '300' });
    const body = JSON.stringify({ query: creatorsQuery, variables: { ids: Array.from({ length: 30 }, (_, index) => String(1000 + index)) } });
    expect(body.length).toBeGreaterThan(300);
    const sized = await gateway.app.fetch('http://gateway.test/graphql', { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const streamed = await gateway.app.fetch('http://gateway.test/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: new Blob([body]).stream(),
      duplex: 'half',
    } as RequestInit);
    for (const response of [sized, streamed]) {
      expect(response.status).toBe(413);
      expect(await response.json()).toEqual({ errors: [{ message: 'Request body too large', extensions: { code: 'REQUEST_ENTITY_TOO_LARGE', retryable: false } }] });
    }
    expect(upstream.calls()).toBe(0);
  });

  it('refuses batched requests (an array of operations)', async () => {
    const { upstream, gateway } = await setUp();
    const response = await gateway.app.fetch('http://gateway.test/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify([{ query: '{ creator(kolId: "1") { linkStructure { fetchedAt } } }' }, { query: '{ creator(kolId: "2") { linkStructure { fetchedAt } } }' }]),
    });
    expect(response.status).toBe(400);
    expect(((await response.json()) as any).errors[0].extensions.code).toBe('BAD_REQUEST');
    expect(upstream.calls()).toBe(0);
  });

  it('a body that is not JSON: HTTP 400 BAD_REQUEST, without the JSON parser’s own message', async () => {
    const { upstream, gateway } = await setUp();
    const response = await gateway.app.fetch('http://gateway.test/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"query": bad',
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ errors: [{ message: 'POST body sent invalid JSON.', extensions: { code: 'BAD_REQUEST', retryable: false } }] });
    expect(upstream.calls()).toBe(0);
  });

  it('lets GraphiQL’s introspection query through the default limits', async () => {
    const { gateway } = await setUp();
    const { body } = await gateway.query(getIntrospectionQuery({ descriptions: true, inputValueDeprecation: true, specifiedByUrl: true }));
    expect(body.errors).toBeUndefined();
    expect(body.data.__schema.queryType.name).toBe('Query');
  });
});

describe('MAX_REPEATED_FIELDS', () => {
  it('refuses a document repeating one field, before graphql-js compares every two copies (40–60 ms for 5 KB)', async () => {
    const { upstream, gateway } = await setUp();
    const copies = (count: number) => Array.from({ length: count }, () => 'linkStructure { stale }').join(' ');
    const started = performance.now();
    const { status, body } = await gateway.query(`query Copies { creator(kolId: "1") { ${copies(240)} } }`);
    expect(performance.now() - started).toBeLessThan(500);
    expect(status).toBe(400);
    expect(body.data).toBeUndefined();
    expect(body.errors).toEqual([
      {
        message: 'The document repeats a field at one level more than 50 times in all; ask for each field once.',
        extensions: { code: 'QUERY_TOO_COMPLEX', retryable: false, limit: 50 },
      },
    ]);
    // 50 repeats, and the few fields colocated client fragments repeat, still run.
    const within = await gateway.query(`query Fifty { creator(kolId: "1") { ${copies(51)} } }`);
    expect(within.body.errors).toBeUndefined();
    const fragments = await gateway.query(`query Colocated { creator(kolId: "1") { kolId ...A ...B ... on Creator { kolId } } }
      fragment A on Creator { kolId linkStructure { stale summary { value } } }
      fragment B on Creator { kolId linkStructure { stale buckets { level value } } }`);
    expect(fragments.body.errors).toBeUndefined();
    expect(fragments.body.data.creator.linkStructure.buckets).toHaveLength(4);
    expect(upstream.calls()).toBe(1);
  });

  it('refuses fields repeated through named fragments as it refuses inline copies: 75 fragments each asking for one field', async () => {
    const { upstream, gateway } = await setUp();
    // 4.5 KB, within every other limit: about 7 ms to validate, on every new document, before it was counted.
    const names = Array.from({ length: 75 }, (_, index) => `F${index}`);
    const { status, body } = await gateway.query(`query Spread { creator(kolId: "1") { ${names.map((name) => `...${name}`).join(' ')} } }
      ${names.map((name) => `fragment ${name} on Creator { linkStructure { stale } }`).join(' ')}`);
    expect(status).toBe(400);
    expect(body.errors).toEqual([expect.objectContaining({ extensions: { code: 'QUERY_TOO_COMPLEX', retryable: false, limit: 50 } })]);
    expect(upstream.calls()).toBe(0);
  });

  it('lets through what Apollo Client sends for a page of colocated fragments, in `creator`, `creators` and a router’s `_entities`', async () => {
    const { upstream, gateway } = await setUp();
    // Each component's fragment repeats the cache's key fields (`kolId`, and the `__typename` Apollo Client adds to every
    // selection set) and asks for its own part of `linkStructure`: 70 repeated fields when the key fields counted.
    const parts = [
      'stale fetchedAt',
      'summary { __typename value }',
      'summary { __typename rankPercent relativeRatio }',
      'buckets { __typename level stage }',
      'buckets { __typename value proportion }',
      'buckets { __typename sameIndustryMedian }',
      'authorLinkType',
      'platform source',
      'stale',
      'summary { __typename value }',
      'buckets { __typename stage value }',
      'fetchedAt',
    ];
    const fragments = parts.map((part, index) => `fragment Card${index}_creator on Creator { __typename kolId linkStructure { __typename ${part} } }`).join('\n');
    const spreads = parts.map((_, index) => `...Card${index}_creator`).join(' ');
    const ids = Array.from({ length: 20 }, (_, index) => String(index + 1));
    const page = await gateway.query(
      `query CreatorDashboard($id: ID!, $ids: [ID!]!) {
        creator(kolId: $id) { __typename kolId ${spreads} }
        creators(kolIds: $ids) { __typename kolId ${spreads} }
      }
      ${fragments}`,
      { id: '1', ids },
    );
    expect(page.body.errors).toBeUndefined();
    expect(page.body.data.creators).toHaveLength(20);
    expect(page.body.data.creator.linkStructure.buckets).toHaveLength(4);
    // A router that reuses the client's fragments in its fetch (through a page fragment spreading them all): 73 before.
    const entities = await gateway.query(
      `query CreatorDashboard__xingtu__0($representations: [_Any!]!) {
        _entities(representations: $representations) { __typename ... on Creator { __typename kolId ...Page_creator } }
      }
      fragment Page_creator on Creator { __typename kolId ${spreads} }
      ${fragments}`,
      { representations: ids.map((kolId) => ({ __typename: 'Creator', kolId })) },
    );
    expect(entities.body.errors).toBeUndefined();
    expect(entities.body.data._entities).toHaveLength(20);
    expect(upstream.calls()).toBe(20);
  });

  it('lets through colocated fragments nested page → sections → components, spread in `creator` and `creators`', async () => {
    const { upstream, gateway } = await setUp();
    // 16 components' fragments, each asking for its part of `linkStructure`, in 4 sections' fragments, in a page's: the
    // components' copies of `linkStructure` counted again at each level spreading them, 57 in all (graphql-js compares
    // two fragments once, and validates this in 1–2 ms).
    const parts = ['stale', 'fetchedAt', 'source', 'platform', 'authorLinkType', 'summary { __typename value }', 'buckets { __typename level }'];
    const components = Array.from({ length: 16 }, (_, index) => `fragment Component${index}_creator on Creator { __typename kolId linkStructure { __typename ${parts[index % parts.length]} } }`);
    const sections = Array.from({ length: 4 }, (_, section) => {
      const spreads = Array.from({ length: 4 }, (_, index) => `...Component${section * 4 + index}_creator`).join(' ');
      return `fragment Section${section}_creator on Creator { __typename kolId ${spreads} }`;
    });
    const { body } = await gateway.query(
      `query CreatorPage($id: ID!, $ids: [ID!]!) {
        creator(kolId: $id) { __typename kolId ...Page_creator }
        creators(kolIds: $ids) { __typename kolId ...Page_creator }
      }
      fragment Page_creator on Creator { __typename kolId ...Section0_creator ...Section1_creator ...Section2_creator ...Section3_creator }
      ${sections.join('\n')}
      ${components.join('\n')}`,
      { id: '1', ids: ['2', '3'] },
    );
    expect(body.errors).toBeUndefined();
    expect(body.data.creators[1].linkStructure.buckets).toHaveLength(4);
    expect(upstream.calls()).toBe(3);
  });

  it('counts fields repeating a response key at one level, as execution collects them through inline and named fragments', () => {
    // `a(n: 1)`: a field with an argument, which graphql-js compares in full (simple leaves are another story, below).
    const count = (source: string) => repeatedFields(parse(source.replace(/\ba\b(?!:)/g, 'a(n: 1)')), 1_000);
    expect(count('{ a a b: a b ... on Q { a ... { b: a } } }')).toBe(4);
    expect(count('{ x { a a } y: x { a a } }')).toBe(2);
    // Through named fragments, and theirs: `a` three times at the operation's level, twice at F's.
    expect(count('{ a ...F } fragment F on Q { a ... on Q { ...G } } fragment G on Q { a }')).toBe(2 + 1);
    // Each fragment once per level, as execution spreads it: two spreads of one fragment repeat nothing.
    expect(count('{ ...F ...F x { ...F } } fragment F on Q { a }')).toBe(0);
    // A cycle (refused by validation) is followed once round: the fragment's own level has spread it already.
    expect(count('{ ...A } fragment A on Q { a ...B } fragment B on Q { a ...A }')).toBe(1 + 1 + 1);
    // A chain of fragments that each spread the next twice: counted once per fragment and level (an exponential count
    // would never end). The operation's level collects `a` from all 31 fragments (30 repeats), Fi's level from 31 − i.
    const chain = Array.from({ length: 31 }, (_, index) => `fragment F${index} on Q { a ...F${index + 1} ...F${index + 1} }`).join(' ');
    expect(count(`{ ...F0 } ${chain}`)).toBe(30 + (30 * 31) / 2);
    // graphql-js compares two fragments once in a document: a fragment's `a` beside another's counts once however many
    // levels spread both, but beside a level's own `a`, at each such level.
    expect(count('{ x { ...F ...G } y { ...F ...G } z { ...F ...G } } fragment F on Q { a } fragment G on Q { a }')).toBe(1);
    expect(count('{ x { a ...F ...G } y { a ...G ...F } } fragment F on Q { a } fragment G on Q { a }')).toBe(2 + 2);
    expect(repeatedFields(parse(`{ ${'a { b } '.repeat(500)} }`), 10)).toBe(11);
  });

  it('does not count copies of a simple leaf graphql-js compares in constant time, and counts every copy once their key holds anything else', () => {
    const count = (source: string) => repeatedFields(parse(source), 10_000, schema);
    // What colocated client fragments repeat: `kolId` and `__typename`, through inline and named fragments alike.
    expect(count('{ creator(kolId: "1") { kolId __typename kolId ... on Creator { kolId __typename } ...F ...G } } fragment F on Creator { kolId __typename } fragment G on Creator { kolId }')).toBe(0);
    // 990 copies of `kolId` (1,000 tokens): graphql-js's own budget stops their comparison after 3–5 ms.
    expect(count(`{ creator(kolId: "1") { ${'kolId '.repeat(990)} } }`)).toBe(0);
    // Another field under that key: 30 aliases `kolId: stale` beside 900 `kolId` took 28–54 ms to validate.
    expect(count(`{ creator(kolId: "1") { ${'kolId '.repeat(900)} ${'kolId: authorLinkType '.repeat(30)} } }`)).toBe(929);
    expect(count('{ creator(kolId: "1") { kolId: __typename kolId kolId } }')).toBe(2);
    // The same name on a type graphql-js does not know (490 `kolId` beside 490 `... on Nope`: 11–37 ms), or with a
    // selection set or arguments.
    expect(count('{ creator(kolId: "1") { kolId kolId ... on Nope { kolId } } }')).toBe(2);
    expect(count('{ creator(kolId: "1") { ...F kolId } } fragment F on Nope { kolId }')).toBe(1);
    expect(count('{ creator(kolId: "1") { linkStructure linkStructure linkStructure { stale } } }')).toBe(2);
    expect(count('{ creator(kolId: "1") { linkStructure { stale } linkStructure linkStructure } }')).toBe(2);
    expect(count('{ creator(kolId: "1") { kolId kolId(n: 1) kolId } }')).toBe(2);
  });
});

describe('MAX_RESULT_FIELDS', () => {
  const linkStructureFields = 'authorLinkType buckets { level stage value proportion sameIndustryMedian } summary { value rankPercent relativeRatio } fetchedAt platform source stale';
  const references = (count: number, typename = 'Creator') =>
    Array.from({ length: count }, (_, index) => ({ __typename: typename, kolId: String((index % 100) + 1) }));
  const refusal = (limit: number) => [
    {
      message: `The answer would hold more than ${limit} fields (each field counted once per object it is asked of).`,
      extensions: { code: 'QUERY_TOO_COMPLEX', retryable: false, limit },
    },
  ];

  it('refuses, before execution, cached `_entities` lists under every alias: 48 KB that held the event loop for a second', async () => {
    const { upstream, gateway } = await setUp();
    const ids = Array.from({ length: 100 }, (_, index) => String(index + 1));
    expect((await gateway.query(creatorsQuery, { ids })).body.errors).toBeUndefined();
    const calls = upstream.calls();
    // 30 aliases (the limit) of 1,200 representations of the 100 cached creators: 36,000 entities, a 2 MB answer,
    // about a second of CPU here, no upstream call, so neither the budget nor the rate limit saw it.
    const aliases = Array.from({ length: 30 }, (_, index) => `e${index}: _entities(representations: $r) { ... on Creator { linkStructure { fetchedAt } } }`);
    const started = performance.now();
    const { status, body } = await gateway.query(`query Many($r: [_Any!]!) { ${aliases.join(' ')} }`, { r: references(1_200) });
    expect(performance.now() - started).toBeLessThan(500);
    expect(status).toBe(400);
    expect(body.data).toBeUndefined();
    expect(body.errors).toEqual(refusal(5_000));
    // A representation that fails costs its error: 100 of them are refused too (1,800 took a quarter of a second).
    const failing = await gateway.query('query Bad($r: [_Any!]!) { _entities(representations: $r) { __typename } }', { r: references(100, 'Nope') });
    expect(failing.body.errors).toEqual(refusal(5_000));
    expect(upstream.calls()).toBe(calls);
  });

  it('lets the largest reasonable query through: 100 creators with every field and a __typename in each selection', async () => {
    const { upstream, gateway } = await setUp();
    const ids = Array.from({ length: 100 }, (_, index) => String(index + 1));
    // Apollo Client adds __typename to every selection set: 3,901 fields counted.
    const { body } = await gateway.query(
      `query All($ids: [ID!]!) { creators(kolIds: $ids) { __typename kolId linkStructure { __typename authorLinkType
        buckets { __typename level stage value proportion sameIndustryMedian } summary { __typename value rankPercent relativeRatio }
        fetchedAt platform source stale } } }`,
      { ids },
    );
    expect(body.errors).toBeUndefined();
    expect(body.data.creators).toHaveLength(100);
    expect(body.data.creators[99].linkStructure.buckets).toHaveLength(4);
    expect(upstream.calls()).toBe(100);
    // So does a router's `_entities` fetch of 150 creators with every field.
    const entities = await gateway.query(
      `query E($r: [_Any!]!) { _entities(representations: $r) { ... on Creator { kolId linkStructure { ${linkStructureFields} } } } }`,
      { r: references(150) },
    );
    expect(entities.body.errors).toBeUndefined();
    expect(entities.body.data._entities).toHaveLength(150);
    expect(upstream.calls()).toBe(100);
  });

  it('counts introspection’s answer too: 30 aliases of GraphiQL’s schema query (376 tokens) are refused, one is answered', async () => {
    const { upstream, gateway } = await setUp();
    const graphiql = getIntrospectionQuery({ descriptions: true });
    const schemaSelection = graphiql.slice(graphiql.indexOf('__schema {') + '__schema '.length, graphiql.indexOf('fragment FullType')).trim().slice(0, -1);
    const aliases = Array.from({ length: 30 }, (_, index) => `s${index}: __schema { ...S }`).join(' ');
    // An 886 KB answer, 33–50 ms of CPU, when each `__schema` counted as one field.
    const { status, body } = await gateway.query(`query Schemas { ${aliases} } fragment S on __Schema ${schemaSelection} ${graphiql.slice(graphiql.indexOf('fragment FullType'))}`);
    expect(status).toBe(400);
    expect(body.errors).toEqual(refusal(5_000));
    const one = await gateway.query(graphiql);
    expect(one.body.errors).toBeUndefined();
    expect(one.body.data.__schema.types.length).toBeGreaterThan(20);
    expect(upstream.calls()).toBe(0);
  });

  it('counts each field once per object it is asked of, through fragments, repeated kolIds, lists and __typename', async () => {
    const { upstream, gateway } = await setUp({ MAX_RESULT_FIELDS: '25' });
    // 1 (creators) + 3 × (kolId, __typename, linkStructure; kolId asked twice is one field) + 3 × buckets + 3 × 4 × level = 25;
    // a fourth creator (a repeat counts: the answer repeats it) makes 33.
    const query = 'query ($ids: [ID!]!) { creators(kolIds: $ids) { kolId ...C } } fragment C on Creator { __typename kolId linkStructure { buckets { level } } }';
    const fits = await gateway.query(query, { ids: ['1', '2', '2'] });
    expect(fits.body.errors).toBeUndefined();
    const over = await gateway.query(query, { ids: ['1', '2', '2', '1'] });
    expect(over.status).toBe(400);
    expect(over.body.errors).toEqual(refusal(25));
    expect(upstream.calls()).toBe(2);
  });
});

describe('MAX_RESULT_FIELDS and remembered failures', () => {
  it('counts the errors of a failure the cache remembers (base_resp): 2,400 copies are not answered free of every limit', async () => {
    // A code-0 answer with Xingtu's base_resp failure (any kolId that names no author) is remembered for the TTL, so the
    // cost check counts it free: no call, no rate-limit charge. Each position asking for it then costs an error (~120 µs
    // against ~4 µs a field), which the count does not weigh: 2,400 references to it (4,801 fields, within 5,000) made a
    // 580 KB answer and took 275–570 ms of CPU here, on every request, with RATE_LIMIT_PER_MINUTE spent.
    const { upstream, gateway } = await gatewayOnFakeUpstream({ RATE_LIMIT_PER_MINUTE: '1' }, () =>
      reply.ok({ base_resp: { status_code: 1001, status_message: 'author not found' } }),
    );
    const first = await gateway.query('{ creator(kolId: "404") { linkStructure { stale } } }');
    expect(first.body.errors?.[0]?.extensions).toMatchObject({ code: 'UPSTREAM_ERROR', upstreamCode: 1001 });
    const r = Array.from({ length: 2_400 }, () => ({ __typename: 'Creator', kolId: '404' }));
    const many = await gateway.query('query ($r: [_Any!]!) { _entities(representations: $r) { ... on Creator { linkStructure { stale } } } }', { r });
    expect(many.status).toBe(400);
    expect(many.body.errors?.map((error) => error.extensions?.code)).toEqual(['QUERY_TOO_COMPLEX']);
    expect(upstream.calls()).toBe(1);
    // A dashboard of 100 creators with every field, all of them failing so, is still answered: an error for each.
    const ids = Array.from({ length: 100 }, () => '404');
    const dashboard = await gateway.query(
      `query ($ids: [ID!]!) { creators(kolIds: $ids) { __typename kolId linkStructure { __typename authorLinkType buckets { __typename level stage value proportion sameIndustryMedian } summary { __typename value rankPercent relativeRatio } fetchedAt platform source stale } } }`,
      { ids },
    );
    expect(dashboard.status).toBe(200);
    expect(dashboard.body.errors).toHaveLength(100);
    expect(upstream.calls()).toBe(1);
  });

  it('counts the errors of a platform v1 does not answer (JUSTONEAPI_LINK_ENDPOINT=v1), which fail without a call too', async () => {
    const { upstream, gateway } = await gatewayOnFakeUpstream({ JUSTONEAPI_LINK_ENDPOINT: 'v1' });
    const r = Array.from({ length: 2_400 }, (_, index) => ({ __typename: 'Creator', kolId: String(index + 1) }));
    const query = 'query ($r: [_Any!]!) { _entities(representations: $r) { ... on Creator { linkStructure(platform: LIVE_STREAMING) { stale } } } }';
    const many = await gateway.query(query, { r });
    expect(many.status).toBe(400);
    expect(many.body.errors?.map((error) => error.extensions?.code)).toEqual(['QUERY_TOO_COMPLEX']);
    // 100 of them are answered, each with its error.
    const some = await gateway.query(query, { r: r.slice(0, 100) });
    expect(some.body.errors).toHaveLength(100);
    expect(some.body.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT' });
    expect(upstream.calls()).toBe(0);
  });
});

describe('MAX_RESULT_FIELDS and remembered failures, breaker open', () => {
  it('counts the errors of a remembered failure while the breaker is open too (peek calls it fresh)', async () => {
    // 404: a base_resp failure, remembered for the TTL; 9: code 303 (quota), which opens the breaker.
    const { upstream, gateway } = await gatewayOnFakeUpstream({}, (request) =>
      request.kolId === '9' ? reply.business(303) : reply.ok({ base_resp: { status_code: 1001, status_message: 'author not found' } }),
    );
    const first = await gateway.query('{ creator(kolId: "404") { linkStructure { stale } } }');
    expect(first.body.errors?.[0]?.extensions).toMatchObject({ code: 'UPSTREAM_ERROR', upstreamCode: 1001 });
    const quota = await gateway.query('{ creator(kolId: "9") { linkStructure { stale } } }');
    expect(quota.body.errors?.[0]?.extensions?.code).toBe('UPSTREAM_QUOTA_EXCEEDED');
    const calls = upstream.calls();
    const r = Array.from({ length: 2_400 }, () => ({ __typename: 'Creator', kolId: '404' }));
    const many = await gateway.query('query ($r: [_Any!]!) { _entities(representations: $r) { ... on Creator { linkStructure { stale } } } }', { r });
    expect(many.status).toBe(400);
    expect(many.body.errors?.map((error) => error.extensions?.code)).toEqual(['QUERY_TOO_COMPLEX']);
    expect(upstream.calls()).toBe(calls);
  });
});

describe('MAX_UPSTREAM_CALLS_PER_OPERATION', () => {
  const refusal = (upstreamCalls: number) => [
    {
      message: `This operation would make ${upstreamCalls} upstream calls; one operation may make at most 3.`,
      extensions: { code: 'UPSTREAM_BUDGET_EXCEEDED', retryable: false, upstreamCalls, maxUpstreamCalls: 3 },
    },
  ];

  it('counts aliases and creators lists together, and refuses the operation before any call', async () => {
    const { upstream, gateway } = await setUp({ MAX_UPSTREAM_CALLS_PER_OPERATION: '3' });
    const { status, body } = await gateway.query(
      /* GraphQL */ `
        query ($ids: [ID!]!) {
          a: creator(kolId: "1") { linkStructure { fetchedAt } }
          b: creator(kolId: "2") { linkStructure { fetchedAt } }
          creators(kolIds: $ids) { linkStructure { fetchedAt } }
        }
      `,
      { ids: ['3', '4'] },
    );
    expect(status).toBe(400);
    expect(body.data).toBeUndefined();
    expect(body.errors).toEqual(refusal(4));
    expect(upstream.calls()).toBe(0);
  });

  it('counts distinct (kolId, acceptCache) pairs: repeats are free, acceptCache true and false are two', async () => {
    const { upstream, gateway } = await setUp({ MAX_UPSTREAM_CALLS_PER_OPERATION: '3' });
    const repeats = await gateway.query(/* GraphQL */ `
      {
        a: creator(kolId: "1") { linkStructure { fetchedAt } }
        creators(kolIds: ["1", "2", "2", "1"]) { linkStructure { fetchedAt } again: linkStructure(acceptCache: false) { fetchedAt } }
        ...Three
      }
      fragment Three on Query { creator(kolId: "3") { linkStructure { fetchedAt } } }
    `);
    expect(repeats.body.errors).toBeUndefined();
    expect(upstream.calls()).toBe(3);

    upstream.reset();
    const both = await gateway.query(/* GraphQL */ `
      { creators(kolIds: ["5", "6"]) { fresh: linkStructure { fetchedAt } cached: linkStructure(acceptCache: true) { fetchedAt } } }
    `);
    expect(both.body.errors).toEqual(refusal(4));
    expect(upstream.calls()).toBe(0);
  });

  it('does not count what the cache can answer, nor creators whose linkStructure is not asked for or is skipped', async () => {
    const { upstream, gateway } = await setUp({ MAX_UPSTREAM_CALLS_PER_OPERATION: '3' });
    await gateway.query(creatorsQuery, { ids: ['1', '2', '3'] });
    expect(upstream.calls()).toBe(3);
    const { body } = await gateway.query(
      /* GraphQL */ `
        query ($ids: [ID!]!, $skip: Boolean!) {
          creators(kolIds: $ids) { kolId linkStructure { fetchedAt } }
          ids: creators(kolIds: ["7", "8", "9", "10"]) { kolId }
          skipped: creators(kolIds: ["11", "12", "13", "14"]) @skip(if: $skip) { linkStructure { fetchedAt } }
        }
      `,
      { ids: ['1', '2', '3', '4', '5', '6'], skip: true },
    );
    expect(body.errors).toBeUndefined();
    expect(body.data.creators).toHaveLength(6);
    expect(upstream.calls()).toBe(6);
  });

  it('a bad kolId anywhere refuses the whole operation: its valid siblings make no upstream call', async () => {
    const { upstream, gateway } = await setUp();
    const { status, body } = await gateway.query(/* GraphQL */ `
      {
        good: creator(kolId: "1") { linkStructure { fetchedAt } }
        list: creators(kolIds: ["2", "3"]) { linkStructure { fetchedAt } }
        bad: creators(kolIds: ["4", "x"]) { linkStructure { fetchedAt } }
      }
    `);
    expect(status).toBe(200);
    expect(body).toEqual({
      data: null,
      errors: [
        {
          message: 'kolIds must be 1 to 32 ASCII digits.',
          // Where in the document, as execution's errors say.
          locations: [{ line: 5, column: 9 }],
          path: ['bad'],
          extensions: { code: 'BAD_USER_INPUT', retryable: false, argument: 'kolIds', index: 1, kolId: 'x' },
        },
      ],
    });
    expect(upstream.calls()).toBe(0);
  });
});

describe('a variable named $__proto__', () => {
  // The cost check reads variables with graphql-js, which keeps `$__proto__` like any other; the executor Yoga runs
  // (@graphql-tools/executor) stores coerced variables in a plain object, where it is lost and the argument's default
  // used instead. So the check counted one request and execution made another, neither charged nor within the budget.
  const post = (gateway: TestGateway, body: string) =>
    gateway.app.fetch('http://gateway.test/graphql', { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json' }, body });
  const ids = JSON.stringify(['1', '2', '3', '4', '5']);

  it('is refused before execution: with v1, a platform it cannot answer was counted free while SHORT_VIDEO was fetched', async () => {
    const { upstream, gateway } = await setUp({ JUSTONEAPI_LINK_ENDPOINT: 'v1', MAX_UPSTREAM_CALLS_PER_OPERATION: '1', RATE_LIMIT_PER_MINUTE: '1' });
    // A default is enough (GET clients too); a JSON body can also send it as `{"__proto__": …}`.
    const defaulted = `query ($__proto__: CreatorPlatform = LIVE_STREAMING) { creators(kolIds: ${ids}) { linkStructure(platform: $__proto__) { platform } } }`;
    const sent = 'query ($__proto__: CreatorPlatform) { creators(kolIds: ["6", "7"]) { linkStructure(platform: $__proto__) { platform } } }';
    for (const body of [JSON.stringify({ query: defaulted }), `{"query":${JSON.stringify(sent)},"variables":{"__proto__":"LIVE_STREAMING"}}`]) {
      const response = await post(gateway, body);
      expect(response.status).toBe(400);
      const answer = (await response.json()) as { data?: unknown; errors: Array<{ extensions: Record<string, unknown> }> };
      expect(answer.data).toBeUndefined();
      expect(answer.errors.map((error) => error.extensions['code'])).toEqual(['GRAPHQL_VALIDATION_FAILED']);
    }
    expect(upstream.calls()).toBe(0);
  });

  it('is refused before execution: a cached platform was counted while another, uncached, was fetched past the budget', async () => {
    const { upstream, gateway } = await setUp({ MAX_UPSTREAM_CALLS_PER_OPERATION: '3' });
    for (const some of [['1', '2', '3'], ['4', '5']]) {
      const cached = await gateway.query(`{ creators(kolIds: ${JSON.stringify(some)}) { linkStructure(platform: LIVE_STREAMING) { platform } } }`);
      expect(cached.body.errors).toBeUndefined();
    }
    expect(upstream.calls()).toBe(5);
    // Five SHORT_VIDEO calls in one operation allowed three, counted as none.
    const response = await post(gateway, JSON.stringify({
      query: `query ($__proto__: CreatorPlatform = LIVE_STREAMING) { creators(kolIds: ${ids}) { linkStructure(platform: $__proto__) { platform } } }`,
    }));
    expect(upstream.calls()).toBe(5);
    expect(response.status).toBe(400);
  });
});

describe('RATE_LIMIT_PER_MINUTE', () => {
  const keyA = 'client_a_key_0123456789';
  const keyB = 'client_b_key_0123456789';

  it('charges each client its upstream calls; over the limit → HTTP 429 RATE_LIMITED with a retry hint; cached answers stay free', async () => {
    const { upstream, gateway } = await setUp({ RATE_LIMIT_PER_MINUTE: '3', GATEWAY_API_KEYS: `${keyA},${keyB}` });
    const asA = { authorization: `Bearer ${keyA}` };

    const first = await gateway.query(creatorsQuery, { ids: ['1', '2'] }, asA);
    expect(first.body.errors).toBeUndefined();

    const limited = await gateway.query(creatorsQuery, { ids: ['3', '4'] }, asA);
    expect(limited.status).toBe(429);
    // One call left in the bucket, two needed: one more comes back after 60 s / 3 = 20 s.
    expect(limited.body).toEqual({
      errors: [
        {
          message: 'Too many upstream calls from this client; retry after extensions.retryAfterSeconds.',
          extensions: { code: 'RATE_LIMITED', retryable: true, retryAfterSeconds: 20 },
        },
      ],
    });
    const raw = await gateway.app.fetch('http://gateway.test/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...asA },
      body: JSON.stringify({ query: creatorsQuery, variables: { ids: ['3', '4'] } }),
    });
    expect(raw.headers.get('retry-after')).toBe('20');
    expect(upstream.calls()).toBe(2);

    // What the cache answers costs nothing, so it is never limited.
    const cached = await gateway.query(creatorsQuery, { ids: ['2', '1', '2'] }, asA);
    expect(cached.body.errors).toBeUndefined();
    // The one call left still goes through.
    const one = await gateway.query(creatorsQuery, { ids: ['1', '3'] }, asA);
    expect(one.body.errors).toBeUndefined();
    expect(upstream.calls()).toBe(3);

    // Another key is another client, with its own bucket.
    const other = await gateway.query(creatorsQuery, { ids: ['4', '5', '6'] }, { 'x-api-key': keyB });
    expect(other.body.errors).toBeUndefined();
    expect(upstream.calls()).toBe(6);
  });

  it('without API keys, keys clients by IP address', async () => {
    const { upstream, gateway } = await setUp({ RATE_LIMIT_PER_MINUTE: '2' });
    const server: Server = createServer(gateway.app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    // Loopback is a whole /8: 127.0.0.2 and 127.0.0.3 are two clients on this machine.
    const ask = (from: string, ids: string[]) =>
      new Promise<{ status: number; body: any }>((resolve, reject) => {
        const request = httpRequest(
          { host: '127.0.0.1', port, path: '/graphql', method: 'POST', localAddress: from, headers: { 'content-type': 'application/json' } },
          (response) => {
            let text = '';
            response.on('data', (chunk: Buffer) => (text += chunk.toString()));
            response.on('end', () => resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) }));
          },
        );
        request.on('error', reject);
        request.end(JSON.stringify({ query: creatorsQuery, variables: { ids } }));
      });
    try {
      expect((await ask('127.0.0.2', ['1', '2'])).status).toBe(200);
      const limited = await ask('127.0.0.2', ['3']);
      expect(limited.status).toBe(429);
      expect(limited.body.errors[0].extensions.code).toBe('RATE_LIMITED');
      expect((await ask('127.0.0.3', ['3', '4'])).status).toBe(200);
      expect(upstream.calls()).toBe(4);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('without API keys, keys an IPv6 client by its /64 network, which one subscriber holds whole', async () => {
    const { upstream, gateway } = await setUp({ RATE_LIMIT_PER_MINUTE: '2' });
    const server: Server = createServer(gateway.app);
    await new Promise<void>((resolve) => server.listen(0, '::1', resolve));
    const { port } = server.address() as AddressInfo;
    const ask = (ids: string[]) =>
      new Promise<number>((resolve, reject) => {
        const request = httpRequest({ host: '::1', port, path: '/graphql', method: 'POST', headers: { 'content-type': 'application/json' } }, (response) => {
          response.resume();
          response.on('end', () => resolve(response.statusCode ?? 0));
        });
        request.on('error', reject);
        request.end(JSON.stringify({ query: creatorsQuery, variables: { ids } }));
      });
    try {
      expect(await ask(['1', '2'])).toBe(200);
      expect(await ask(['3'])).toBe(429);
      expect(upstream.calls()).toBe(2);
      await vi.waitFor(() => expect(gateway.logs.filter((line) => line.msg === 'request').map((line) => line['client'])).toEqual(['ip:::/64', 'ip:::/64']));
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
    // Any other address of a /64 is the same client; an IPv4 one mapped into IPv6 stays whole.
    const keys = createApiKeys([]);
    const headers = new Headers();
    expect(clientOf(keys, headers, '2001:db8:1:2:3:4:5:6')).toBe('ip:2001:db8:1:2::/64');
    expect(clientOf(keys, headers, '2001:0DB8:0001:0002::9')).toBe('ip:2001:db8:1:2::/64');
    expect(clientOf(keys, headers, 'fe80::1%eth0')).toBe('ip:fe80::/64');
    expect(clientOf(keys, headers, '2001:db8:1:3::1')).toBe('ip:2001:db8:1:3::/64');
    expect(clientOf(keys, headers, '::ffff:192.0.2.1')).toBe('ip:::ffff:192.0.2.1');
    expect(clientOf(keys, headers, '192.0.2.1')).toBe('ip:192.0.2.1');
  });

  it('an operation larger than the bucket runs once it is full, and is charged in full: the client waits the debt off', async () => {
    const { upstream, gateway } = await setUp({ RATE_LIMIT_PER_MINUTE: '10' });
    const ids = Array.from({ length: 40 }, (_, index) => String(700 + index));
    const large = await gateway.query(creatorsQuery, { ids });
    expect(large.body.errors).toBeUndefined();
    expect(upstream.calls()).toBe(40);
    // 40 calls against 10 a minute: 30 owed, so even one more call waits about (30 + 1) / 10 minutes.
    const next = await gateway.query(creatorsQuery, { ids: ['799'] });
    expect(next.status).toBe(429);
    expect(next.body.errors![0]!.extensions).toMatchObject({ code: 'RATE_LIMITED' });
    expect(next.body.errors![0]!.extensions!['retryAfterSeconds']).toBeGreaterThanOrEqual(180);
    expect(next.body.errors![0]!.extensions!['retryAfterSeconds']).toBeLessThanOrEqual(186);
    expect(upstream.calls()).toBe(40);
  });

  it('RATE_LIMIT_PER_MINUTE=0 turns the limit off', async () => {
    const { upstream, gateway } = await setUp({ RATE_LIMIT_PER_MINUTE: '0' });
    for (let round = 0; round < 3; round += 1) {
      const { body } = await gateway.query(creatorsQuery, { ids: Array.from({ length: 100 }, (_, index) => String(round * 1000 + index)) });
      expect(body.errors).toBeUndefined();
    }
    expect(upstream.calls()).toBe(300);
  });
});
