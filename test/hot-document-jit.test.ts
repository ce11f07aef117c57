import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reply, startFakeUpstream, type FakeUpstream } from './fake-upstream.js';
import { createTestGateway, type TestGateway } from './gateway.js';

/** The gateway compiles a document with graphql-jit after this many runs (src/app.ts). */
const compileAfterRuns = 20;

describe('hot documents run compiled (graphql-jit)', () => {
  let upstream: FakeUpstream;
  let gateway: TestGateway;

  beforeAll(async () => {
    upstream = await startFakeUpstream((request) => (request.kolId === '13' ? reply.business(600) : reply.ok()));
    gateway = createTestGateway(upstream.url);
  });
  afterAll(async () => {
    await gateway.close();
    await upstream.close();
  });

  const compiledOperations = () =>
    gateway.logs.filter((line) => line['msg'] === 'compiled a hot GraphQL document with graphql-jit').map((line) => line['operation']);

  it('answers exactly as graphql-js did, data and errors, once the document is compiled', async () => {
    const query = /* GraphQL */ `
      query Hot($ids: [ID!]!) {
        creators(kolIds: $ids) {
          kolId
          linkStructure { authorLinkType buckets { level stage value proportion sameIndustryMedian } summary { value rankPercent relativeRatio } fetchedAt }
        }
        one: creator(kolId: "12") { kolId linkStructure(acceptCache: true) { summary { value } } }
      }
    `;
    const answers: string[] = [];
    for (let run = 1; run <= compileAfterRuns + 3; run += 1) {
      answers.push((await gateway.query(query, { ids: ['11', '13', '11'] })).text);
      expect(compiledOperations()).toEqual(run < compileAfterRuns ? [] : ['Hot']);
    }
    const first = JSON.parse(answers[0]!);
    expect(first.errors).toEqual([
      expect.objectContaining({ path: ['creators', 1, 'linkStructure'], extensions: expect.objectContaining({ code: 'UPSTREAM_PERMISSION_DENIED', kolId: '13' }) }),
    ]);
    expect(first.data.creators[0].linkStructure.buckets).toHaveLength(4);
    for (const answer of answers) expect(JSON.parse(answer)).toEqual(first);
  });

  it('logs a compiled document’s operation name cut short past 128 characters, as the request line does', async () => {
    const name = `Long${'x'.repeat(5_000)}`;
    for (let run = 1; run <= compileAfterRuns; run += 1) await gateway.query(`query ${name} { creator(kolId: "14") { kolId } }`);
    expect(compiledOperations()).toContain(`${name.slice(0, 128)}…`);
  });

  it('writes `errors` before `data` once compiled, as graphql-js did: the same bytes, not only the same JSON', async () => {
    const query = 'query Ordered { fine: creator(kolId: "14") { kolId } failing: creator(kolId: "13") { linkStructure { source } } }';
    const answers: string[] = [];
    for (let run = 1; run <= compileAfterRuns + 2; run += 1) answers.push((await gateway.query(query)).text);
    expect(compiledOperations()).toContain('Ordered');
    expect(answers[0]).toMatch(/^\{"errors":\[.*\],"data":\{/);
    // The key order a client reading the text (a log, a snapshot, a streaming parser) sees, unchanged by compilation.
    for (const answer of answers) expect(answer).toBe(answers[0]);
  });

  it('leaves a document with a variable inside a literal to graphql-js: an inline _entities representation keeps working when hot', async () => {
    // A gateway of its own: the others' code 600 has opened this one's circuit breaker.
    const fresh = createTestGateway(upstream.url);
    const compiledHere = () =>
      fresh.logs.filter((line) => line['msg'] === 'compiled a hot GraphQL document with graphql-jit').map((line) => line['operation']);
    upstream.reset();
    const query = /* GraphQL */ `
      query InlineEntity($id: String!) {
        _entities(representations: [{ __typename: "Creator", kolId: $id }]) { ... on Creator { kolId linkStructure { summary { value } } } }
      }
    `;
    for (let run = 1; run <= compileAfterRuns + 3; run += 1) {
      const { body } = await fresh.query(query, { id: String(2_000 + run) });
      expect(body.errors).toBeUndefined();
      expect(body.data._entities).toEqual([{ kolId: String(2_000 + run), linkStructure: { summary: { value: 9875885 } } }]);
    }
    expect(compiledHere()).toEqual([]);
    expect(upstream.calls()).toBe(compileAfterRuns + 3);
    await fresh.close();
  });

  it('leaves a document with @skip or @include to Yoga’s executor: a fragment spread twice, once skipped, keeps its fields when hot', async () => {
    const query = /* GraphQL */ `
      query Conditional($id: ID!, $no: Boolean!) {
        creator(kolId: $id) { kolId ...F @include(if: $no) ...F }
      }
      fragment F on Creator { linkStructure { summary { value } } }
    `;
    upstream.reset();
    const answers: string[] = [];
    for (let run = 1; run <= compileAfterRuns + 3; run += 1) answers.push((await gateway.query(query, { id: '11', no: false })).text);
    expect(new Set(answers).size).toBe(1);
    expect(JSON.parse(answers.at(-1)!)).toEqual({ data: { creator: { kolId: '11', linkStructure: { summary: { value: 9875885 } } } } });
    expect(compiledOperations()).not.toContain('Conditional');
  });

  it('leaves a document with a non-null variable that has a default to graphql-js: the default still applies when the variable is absent', async () => {
    // graphql-jit 0.8 applies a variable's default only when the variable is nullable: `$id: ID! = "15"`, sent without
    // `id`, failed with "was not provided" once compiled, after the cost check had charged for its call.
    const query = 'query NonNullDefault($id: ID! = "15", $ids: [ID!]! = ["16"]) { creator(kolId: $id) { kolId linkStructure { source } } creators(kolIds: $ids) { kolId } }';
    // A gateway of its own: the others' code 600 has opened this one's circuit breaker.
    const fresh = createTestGateway(upstream.url);
    upstream.reset();
    const answers: Array<{ status: number; text: string }> = [];
    for (let run = 1; run <= compileAfterRuns + 2; run += 1) {
      const { status, text } = await fresh.query(query, {});
      answers.push({ status, text });
    }
    await fresh.close();
    expect(answers[0]).toEqual({ status: 200, text: '{"data":{"creator":{"kolId":"15","linkStructure":{"source":"v1"}},"creators":[{"kolId":"16"}]}}' });
    for (const answer of answers) expect(answer).toEqual(answers[0]);
    expect(upstream.calls('15')).toBe(1);
  });

  it('leaves a document with an object literal to graphql-js: a `__proto__` key in a representation stays a key, never an unplanned call', async () => {
    // graphql-jit writes literal arguments (and variable defaults) into the code it generates as JSON, where a
    // `__proto__` key sets the object's prototype: the representation then read as a Creator to @apollo/subgraph,
    // and its linkStructure was fetched, though the cost check (reading it as graphql-js does) planned and charged nothing.
    const fresh = createTestGateway(upstream.url);
    upstream.reset();
    const documents = [
      '{ _entities(representations: [{ __proto__: { __typename: "Creator", kolId: "27" } }]) { ... on Creator { kolId linkStructure { source } } } }',
      'query ProtoDefault($r: [_Any!] = [{ __proto__: { __typename: "Creator", kolId: "28" } }]) { _entities(representations: $r) { ... on Creator { kolId linkStructure { source } } } }',
    ];
    for (const query of documents) {
      const answers: string[] = [];
      for (let run = 1; run <= compileAfterRuns + 2; run += 1) answers.push((await fresh.query(query, {})).text);
      expect(JSON.parse(answers[0]!)).toMatchObject({
        data: { _entities: [null] },
        errors: [{ path: ['_entities', 0], extensions: { code: 'BAD_USER_INPUT', argument: 'representations', index: 0 } }],
      });
      for (const answer of answers) expect(answer).toBe(answers[0]);
    }
    await fresh.close();
    expect(upstream.calls()).toBe(0);
  });

  it('leaves a document whose string literal holds graphql-jit’s markers to graphql-js: a client’s text is never run as code', async () => {
    // graphql-jit writes literal arguments into its generated code with JSON.stringify, then turns its own marker strings
    // back into values: `"__MAGIC_DATE__<uuid><text>"` became `new Date(<text>)`, so the text ran as JavaScript in the
    // gateway (any string argument: `__type(name:)` needs no key to reach, and passes the cost check). The markers are
    // public constants of the package.
    const flag = 'hotDocumentJitInjected';
    const marker = '__MAGIC_DATE__33a9e76d_02e0_4128_8e92_3530ad3da74d';
    const query = `{ __type(name: "${marker}(globalThis.${flag} = (globalThis.${flag} ?? 0) + 1)") { name } nan: __type(name: "__MAGIC_NAN__57f286b9_4c20_487f_b409_79804ddcb4f8") { name } }`;
    const answers: string[] = [];
    for (let run = 1; run <= compileAfterRuns + 2; run += 1) answers.push((await gateway.query(query)).text);
    expect((globalThis as Record<string, unknown>)[flag]).toBeUndefined();
    expect(answers[0]).toBe('{"data":{"__type":null,"nan":null}}');
    for (const answer of answers) expect(answer).toBe(answers[0]);
  });

  it('leaves a document whose enum literal holds graphql-jit’s markers to graphql-js: an `_Any` takes a bare name as its text', async () => {
    // `_Any` parses its literal untyped, so an enum value (a bare name, which the string-literal check never sees) reaches
    // graphql-jit as a string and is written into its code as JSON like one: `__MAGIC_DATE__<uuid><name>` became
    // `new Date(<name>)`, the client's name evaluated as JavaScript (a global read; an unknown one threw: HTTP 500).
    const marker = '__MAGIC_DATE__33a9e76d_02e0_4128_8e92_3530ad3da74d';
    const probe = 'hotDocumentJitEnumProbe';
    let reads = 0;
    Object.defineProperty(globalThis, probe, { configurable: true, get: () => ((reads += 1), 0) });
    try {
      for (const name of [probe, 'hotDocumentJitNoSuchGlobal']) {
        const query = `{ _entities(representations: [${marker}${name}]) { __typename } }`;
        const answers: Array<{ status: number; text: string }> = [];
        for (let run = 1; run <= compileAfterRuns + 2; run += 1) {
          const { status, text } = await gateway.query(query);
          answers.push({ status, text });
        }
        expect(answers[0]).toMatchObject({ status: 200 });
        expect(JSON.parse(answers[0]!.text)).toMatchObject({ data: { _entities: [null] }, errors: [{ extensions: { code: 'BAD_USER_INPUT', index: 0 } }] });
        for (const answer of answers) expect(answer).toEqual(answers[0]);
      }
      expect(reads).toBe(0);
    } finally {
      delete (globalThis as Record<string, unknown>)[probe];
    }
  });

  it('leaves a document with an alias `__proto__` to graphql-js: same keys in the same order', async () => {
    // graphql-jit builds answers in plain objects, where `__proto__` is the prototype, not a key: the alias moved to the
    // end of its object once compiled. (A variable named `$__proto__` never runs: the cost check refuses it.)
    const query = '{ __proto__: creator(kolId: "31") { kolId } after: creator(kolId: "32") { kolId } }';
    const fresh = createTestGateway(upstream.url);
    const answers: Array<{ status: number; text: string }> = [];
    for (let run = 1; run <= compileAfterRuns + 2; run += 1) {
      const { status, text } = await fresh.query(query);
      answers.push({ status, text });
    }
    expect(answers[0]!.text).toBe('{"data":{"__proto__":{"kolId":"31"},"after":{"kolId":"32"}}}');
    for (const answer of answers) expect(answer).toEqual(answers[0]);
    await fresh.close();
  });

  it('leaves a document with a variable named like an Object.prototype member to graphql-js: its default still applies when hot', async () => {
    // graphql-jit reads a variable as `input["<name>"] == null`: absent, `$constructor` (or `$toString`, `$valueOf`…) is
    // the inherited function, not null, so once compiled the request was refused ("got invalid value [function Object]")
    // where graphql-js applied the default, after the cost check had charged for the call.
    for (const query of [
      'query ProtoMember($constructor: ID = "41") { creator(kolId: $constructor) { kolId } }',
      'query ProtoMemberList($toString: [ID!] = ["42"]) { creators(kolIds: $toString) { kolId } }',
    ]) {
      const answers: Array<{ status: number; text: string }> = [];
      for (let run = 1; run <= compileAfterRuns + 2; run += 1) {
        const { status, text } = await gateway.query(query, {});
        answers.push({ status, text });
      }
      expect(JSON.parse(answers[0]!.text)).not.toHaveProperty('errors');
      for (const answer of answers) expect(answer).toEqual(answers[0]);
    }
  });

  it('runs the operation operationName names, in a document holding several', async () => {
    const document = 'query A { creator(kolId: "1") { kolId } } query B { creators(kolIds: ["2", "3"]) { kolId } }';
    const send = async (operationName: string) => {
      const response = await gateway.app.fetch('http://gateway.test/graphql', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: document, operationName }),
      });
      return response.json();
    };
    for (let run = 0; run <= compileAfterRuns; run += 1) {
      expect(await send('A')).toEqual({ data: { creator: { kolId: '1' } } });
      expect(await send('B')).toEqual({ data: { creators: [{ kolId: '2' }, { kolId: '3' }] } });
    }
  });

  it('still refuses an operationName the compiled document does not have', async () => {
    const query = 'query Only { creator(kolId: "1") { kolId } }';
    const askForOther = async () => {
      const response = await gateway.app.fetch('http://gateway.test/graphql', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query, operationName: 'Other' }),
      });
      return { status: response.status, body: await response.json() };
    };
    const before = await askForOther();
    expect(before.body.data ?? null).toBeNull();
    expect(before.body.errors).toHaveLength(1);
    for (let run = 0; run <= compileAfterRuns; run += 1) await gateway.query(query);
    expect(compiledOperations()).toContain('Only');
    expect(await askForOther()).toEqual(before);
  });

  it('refuses bad variables exactly as graphql-js did, status and message, once the document is compiled', async () => {
    const query = 'query Vars($kolId: ID!, $platform: CreatorPlatform) { creator(kolId: $kolId) { linkStructure(platform: $platform) { source } } }';
    const badVariables = [{}, { kolId: null }, { kolId: ['1'] }, { kolId: '1', platform: 'RADIO' }];
    const answer = async (variables: Record<string, unknown>) => {
      const { status, body } = await gateway.query(query, variables);
      return { status, body };
    };
    const before = await Promise.all(badVariables.map(answer));
    for (const refused of before) {
      expect(refused.status).toBe(400);
      expect(refused.body.data).toBeUndefined();
    }
    for (let run = 0; run <= compileAfterRuns; run += 1) await gateway.query(query, { kolId: '1' });
    expect(compiledOperations()).toContain('Vars');
    expect(await Promise.all(badVariables.map(answer))).toEqual(before);
  });

  it('stops at the variable errors Yoga’s executor stops at, once the document is compiled, not at one per bad item', async () => {
    const query = 'query Items($ids: [ID!]!) { creators(kolIds: $ids) { kolId } }';
    const bad = { ids: Array.from({ length: 100 }, () => ({})) };
    const before = await gateway.query(query, bad);
    expect(before.status).toBe(400);
    expect(before.body.errors).toHaveLength(51);
    expect(before.body.errors?.at(-1)?.message).toBe('Too many errors processing variables, error limit reached. Execution aborted.');
    for (let run = 0; run <= compileAfterRuns; run += 1) await gateway.query(query, { ids: ['1'] });
    expect(compiledOperations()).toContain('Items');
    expect(await gateway.query(query, bad)).toEqual(before);
  });
});
