import { Trace } from '@apollo/usage-reporting-protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { documentedPayload, reply, startFakeUpstream, type FakeReply, type FakeUpstream } from './fake-upstream.js';
import { createTestGateway, type TestGateway } from './gateway.js';

/** The gateway compiles a document with graphql-jit on its 20th run (src/app.ts). */
const compileAfterRuns = 20;
const runs = compileAfterRuns + 2;

/** How the fake upstream answers each kolId: the README's error table, by business code, next to creators that succeed. */
const failures: Record<string, () => FakeReply> = {
  '400': () => reply.business(400),
  '500': () => reply.business(500),
  '301': () => reply.business(301),
  '999': () => reply.business(999),
  '502': () => reply.http(502),
  '777': () => reply.ok({ ...documentedPayload, link_struct: { ...documentedPayload.link_struct, '1': { proportion: 2, same_industry_median: 1, value: 1 } } }),
  '888': () => reply.ok({ author_link_type: null, base_resp: { status_code: 0, status_message: '' }, link_struct: { '1': documentedPayload.link_struct['1'] } }),
};

interface Answer {
  status: number;
  contentType: string | null;
  /** The body as sent (its keys in the order sent), errors sorted by path, timestamps and the trace replaced. */
  text: string;
  /** The upstream requests this run made, as `kolId platform acceptCache`, sorted. */
  calls: string[];
  /** The federated trace's tree and errors, when asked for. */
  trace?: unknown;
}

/**
 * Each document is sent `runs` times: the first 19 answers come from Yoga's executor, the rest from graphql-jit
 * (src/hot-document-jit.ts). Every answer must match the first: status, content type, the body's text (keys in order),
 * the federated trace's tree, and the upstream calls made. (A non-null field failing cannot be provoked through this
 * schema: kolIds are refused by the cost check before execution and the upstream's data is validated, so null bubbling
 * past `linkStructure` is only reached through the cost check's `data: null`.)
 */
describe('graphql-js and graphql-jit answer alike (differential)', () => {
  let upstream: FakeUpstream;
  let gateway: TestGateway;

  beforeAll(async () => {
    upstream = await startFakeUpstream((request) => failures[request.kolId ?? '']?.() ?? reply.ok());
    gateway = createTestGateway(upstream.url, {
      // Every run calls the upstream again, so each run's calls can be compared; nothing opens the breaker or pauses.
      CACHE_TTL_SECONDS: '0',
      CACHE_STALE_SECONDS: '0',
      UPSTREAM_RETRIES: '0',
      RATE_LIMIT_PER_MINUTE: '0',
      BREAKER_COOLDOWN_SECONDS: '0',
      JUSTONEAPI_LINK_ENDPOINT: 'gw',
      FEDERATION_TRACING: 'true',
    });
  });
  afterAll(async () => {
    await gateway.close();
    await upstream.close();
  });

  const compiled = () => gateway.logs.filter((line) => line['msg'] === 'compiled a hot GraphQL document with graphql-jit').length;

  async function send(body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<Answer> {
    const before = upstream.requests.length;
    const response = await gateway.app.fetch('http://gateway.test/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json', ...headers },
      body: JSON.stringify(body),
    });
    const raw = await response.text();
    const calls = upstream.requests
      .slice(before)
      .map((request) => `${request.kolId} ${request.platform} ${request.acceptCache}`)
      .sort();
    let trace: unknown;
    const parsed = JSON.parse(raw);
    if (typeof parsed.extensions?.ftv1 === 'string') trace = traceShape(Trace.decode(Buffer.from(parsed.extensions.ftv1, 'base64')));
    // Errors come in the order the upstream's answers arrived, which neither executor decides: sorted by path. The rest is
    // compared as written (JSON.parse and stringify keep the order of keys).
    if (Array.isArray(parsed.errors)) parsed.errors.sort((a: { path?: unknown }, b: { path?: unknown }) => JSON.stringify(a.path ?? null).localeCompare(JSON.stringify(b.path ?? null)));
    const text = JSON.stringify(parsed)
      .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/g, '<time>')
      .replace(/"ftv1":"[^"]*"/, '"ftv1":"<trace>"');
    return { status: response.status, contentType: response.headers.get('content-type'), text, calls, ...(trace ? { trace } : {}) };
  }

  /**
   * Sends the same request `runs` times and returns the first answer (graphql-js) and the last (graphql-jit, when
   * the document compiles), after checking whether it was compiled.
   */
  async function differential(body: Record<string, unknown>, options: { headers?: Record<string, string>; compiles?: boolean } = {}) {
    const compiledBefore = compiled();
    const answers: Answer[] = [];
    for (let run = 1; run <= runs; run += 1) answers.push(await send(body, options.headers));
    expect(compiled(), 'whether the document was compiled').toBe(compiledBefore + (options.compiles === false ? 0 : 1));
    return { js: answers[0]!, jit: answers.at(-1)!, answers };
  }

  const cases: Array<[string, Record<string, unknown>]> = [
    [
      'creators with mixed success and nested error paths',
      {
        query: `query Mixed($ids: [ID!]!) { creators(kolIds: $ids) { kolId __typename linkStructure { __typename authorLinkType source platform stale fetchedAt buckets { __typename level stage value proportion sameIndustryMedian } summary { value rankPercent relativeRatio } } } }`,
        variables: { ids: ['1', '400', '2', '500', '301', '1', '999', '502', '777', '888'] },
      },
    ],
    [
      'aliases of one field with different arguments, some failing',
      {
        query: `query Aliases($p: CreatorPlatform, $ac: Boolean) {
          a: creator(kolId: "1") {
            short: linkStructure { platform source }
            live: linkStructure(platform: LIVE_STREAMING) { platform }
            cached: linkStructure(acceptCache: true) { platform summary { value } }
            asked: linkStructure(platform: $p, acceptCache: $ac) { platform }
          }
          b: creator(kolId: "400") { kolId x: linkStructure { platform } y: linkStructure(platform: PICTURE_TEXT) { platform } }
          c: creators(kolIds: ["3", "500"]) { k: kolId kolId linkStructure(platform: SHORT_DRAMA) { p: platform } }
        }`,
        variables: { p: 'PICTURE_TEXT', ac: null },
      },
    ],
    [
      'fragments: named, inline, on Query, nested, repeated, merged into one key',
      {
        query: `query Frags($id: ID!, $bad: ID!) {
          ...Q
          ... on Query { again: creator(kolId: $bad) { ...C } }
          ... { creator(kolId: $id) { kolId } }
          creator(kolId: $id) { ...C ...C ... on Creator { linkStructure { summary { ...S relativeRatio } } } }
        }
        fragment Q on Query { __typename creator(kolId: $id) { __typename linkStructure { buckets { stage } } } }
        fragment C on Creator { kolId linkStructure { ...L __typename } }
        fragment L on LinkStructure { source summary { ...S } buckets { ... on LinkBucket { level } } }
        fragment S on LinkSummary { value __typename }`,
        variables: { id: '5', bad: '999' },
      },
    ],
    [
      '__schema and __type inside a normal query',
      {
        query: `query Intro($type: String!) {
          __typename
          __schema { queryType { name } mutationType { name } types { name kind } directives { name locations args { name defaultValue } } }
          stage: __type(name: "LinkStage") { kind enumValues { name description isDeprecated } }
          asked: __type(name: $type) { name fields { name type { kind name ofType { name kind ofType { name } } } args { name defaultValue } } }
          missing: __type(name: "Nope") { name }
          creator(kolId: "6") { __typename linkStructure { __typename } }
        }`,
        variables: { type: 'Creator' },
      },
    ],
    [
      '_entities with representations in a variable: good, failing, malformed and foreign',
      {
        query: `query Entities($reps: [_Any!]!) {
          _entities(representations: $reps) { __typename ... on Creator { __typename kolId linkStructure { summary { value } fetchedAt } } }
        }`,
        variables: {
          reps: [
            { __typename: 'Creator', kolId: '7' },
            { __typename: 'Creator', kolId: '400' },
            { __typename: 'Creator', kolId: 'x' },
            { __typename: 'Creator', kolId: 8 },
            { __typename: 'Creator' },
            { __typename: 'LinkBucket', kolId: '9' },
            { __typename: 'Nope', kolId: '9' },
            { kolId: '9' },
            'text',
            { __typename: 'Creator', kolId: '7' },
            { __typename: 'Creator', kolId: '502' },
          ],
        },
      },
    ],
    ['_service', { query: '{ _service { __typename sdl } __typename }' }],
    ['a single kolId written where a list is expected', { query: '{ creators(kolIds: "12") { kolId linkStructure { source } } }' }],
    [
      'a single kolId sent in a list variable, a number sent for an ID',
      { query: 'query One($ids: [ID!]!, $id: ID!) { creators(kolIds: $ids) { kolId } creator(kolId: $id) { kolId linkStructure { source } } }', variables: { ids: '13', id: 14 } },
    ],
    [
      'variables with defaults, absent',
      {
        query: `query Defaults($ids: [ID!] = ["15", "400"], $p: CreatorPlatform = LIVE_STREAMING, $ac: Boolean = true) {
          creators(kolIds: $ids) { kolId linkStructure(platform: $p, acceptCache: $ac) { platform } }
        }`,
        variables: {},
      },
    ],
    [
      'variables with defaults, given null',
      {
        query: `query DefaultsNull($p: CreatorPlatform = LIVE_STREAMING, $ac: Boolean = true) {
          creator(kolId: "16") { linkStructure(platform: $p, acceptCache: $ac) { platform } }
        }`,
        variables: { p: null, ac: null },
      },
    ],
    [
      'nullable arguments: absent variable, null variable',
      {
        query: `query Nullable($p: CreatorPlatform, $ac: Boolean) { creator(kolId: "18") { a: linkStructure(platform: $p) { platform } b: linkStructure(acceptCache: $ac) { platform } } }`,
        variables: { ac: null },
      },
    ],
    [
      'nullable arguments written null',
      { query: `{ creator(kolId: "19") { linkStructure(platform: null, acceptCache: null) { platform } } }` },
    ],
    [
      'an error at a field selected in several places (several locations)',
      {
        query: 'query Many($id: ID!) {\r\n  # a comment with 😀 and\ttab\r  creator(kolId: $id) { ...C ...C linkStructure { source } ... on Creator { linkStructure { platform } ...C } }\n  other: creator(kolId: $id) { ...C }\n  ...Q ...Q\n}\nfragment C on Creator { linkStructure { fetchedAt } }\nfragment Q on Query { creator(kolId: $id) { linkStructure { stale } } }',
        variables: { id: '999' },
      },
    ],
    ['no variables sent, nullable and defaulted ones declared', { query: 'query NoVars($p: CreatorPlatform, $id: ID = "25") { creator(kolId: $id) { linkStructure(platform: $p) { platform } } }' }],
    ['variables null, nullable and defaulted ones declared', { query: 'query NullVars($p: CreatorPlatform, $id: ID = "26") { creator(kolId: $id) { linkStructure(platform: $p) { platform } } }', variables: null }],
  ];

  for (const [name, body] of cases) {
    it(name, async () => {
      const { js, answers } = await differential(body);
      for (const answer of answers) expect(answer).toEqual(js);
    });
  }

  const withOptions: Array<[string, Record<string, unknown>, { headers?: Record<string, string>; compiles?: boolean }]> = [
    [
      'a federated trace in extensions',
      {
        query: `query Traced($ids: [ID!]!) { creators(kolIds: $ids) { kolId renamed: linkStructure { fetchedAt summary { value } } } }`,
        variables: { ids: ['20', '400', '502'] },
      },
      { headers: { 'apollo-federation-include-trace': 'ftv1' } },
    ],
    [
      'application/json answers',
      { query: `query Json($id: ID!) { creator(kolId: $id) { kolId linkStructure { source } } }`, variables: { id: '500' } },
      { headers: { accept: 'application/json' } },
    ],
    [
      'a non-null variable with a default, absent (left uncompiled)',
      { query: `query NonNullDefault($id: ID! = "17") { creator(kolId: $id) { kolId linkStructure { source } } }`, variables: {} },
      { compiles: false },
    ],
    [
      '_entities with representations inline (object literals: left uncompiled)',
      {
        query: `{
          _entities(representations: [{ __typename: "Creator", kolId: "10" }, { __typename: "Creator", kolId: "500" }, { __typename: "Creator", kolId: 11 }, { __typename: "Query" }]) {
            ... on Creator { kolId linkStructure(platform: LIVE_STREAMING) { platform buckets { proportion } } }
          }
        }`,
      },
      { compiles: false },
    ],
    [
      'aliases named like Object.prototype members',
      { query: '{ constructor: creator(kolId: "30") { toString: kolId hasOwnProperty: linkStructure { valueOf: platform } } _service { __typename } }' },
      // Left uncompiled: graphql-jit reads such names from plain objects, where they are inherited.
      { compiles: false },
    ],
    ['operationName naming the only operation', { query: 'query Named { creator(kolId: "21") { kolId } }', operationName: 'Named' }, {}],
    ['operationName null for the only operation', { query: 'query NamedNull { creator(kolId: "21") { kolId } }', operationName: null }, {}],
    ['operationName empty for the only, anonymous, operation', { query: '{ creator(kolId: "22") { kolId } }', operationName: '' }, { compiles: false }],
    ['operationName for an anonymous operation', { query: '{ creator(kolId: "23") { kolId } }', operationName: 'Anything' }, { compiles: false }],
    [
      'operationName with fragments',
      { query: 'fragment F on Creator { kolId } query WithFragment { creator(kolId: "24") { ...F } }', operationName: 'WithFragment' },
      {},
    ],
  ];

  for (const [name, body, options] of withOptions) {
    it(name, async () => {
      const { js, answers } = await differential(body, options);
      for (const answer of answers) expect(answer).toEqual(js);
    });
  }
});

/** The trace's tree (names, types, errors), without its timings. */
function traceShape(node: Trace.INode | Trace): unknown {
  const root = 'root' in node ? (node as Trace).root! : (node as Trace.INode);
  const shape = (n: Trace.INode): unknown => ({
    key: n.responseName || n.index,
    type: n.type,
    parentType: n.parentType,
    originalFieldName: n.originalFieldName || undefined,
    errors: (n.error ?? []).map((error) => ({ message: error.message, location: error.location, json: error.json })),
    children: (n.child ?? []).map(shape).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
  });
  return shape(root);
}
