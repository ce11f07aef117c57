import { Trace } from '@apollo/usage-reporting-protobuf';
import { afterEach, describe, expect, it } from 'vitest';
import { parseEnv } from '../src/env.js';
import { createTestGateway, type TestGateway } from './gateway.js';
import { reply, startFakeUpstream, type FakeUpstream } from './fake-upstream.js';

const query = '{ creator(kolId: "31") { linkStructure { summary { value } } } failing: creator(kolId: "13") { linkStructure { fetchedAt } } }';
const askForTrace = { 'apollo-federation-include-trace': 'ftv1' };

let upstream: FakeUpstream | undefined;
let gateway: TestGateway | undefined;

async function setUp(vars: Record<string, string>) {
  upstream = await startFakeUpstream((request) => (request.kolId === '13' ? reply.business(303) : reply.ok()));
  gateway = createTestGateway(upstream.url, vars);
  return gateway;
}

afterEach(async () => {
  await gateway?.close();
  await upstream?.close();
  gateway = undefined;
  upstream = undefined;
});

/** Response paths of the trace tree, e.g. "creator.linkStructure". */
function tracedPaths(node: Trace.INode, prefix = ''): string[] {
  return (node.child ?? []).flatMap((child) => {
    const path = prefix + (child.responseName ?? String(child.index));
    return [path, ...tracedPaths(child, `${path}.`)];
  });
}

describe('FEDERATION_TRACING', () => {
  it('on: a router asking for ftv1 gets field timings and the (masked, coded) errors in extensions.ftv1', async () => {
    const gateway = await setUp({ FEDERATION_TRACING: 'true' });
    const { body } = await gateway.query(query, undefined, askForTrace);
    expect(body.data).toMatchObject({ creator: { linkStructure: { summary: { value: 9875885 } } }, failing: { linkStructure: null } });
    const ftv1 = (body as { extensions?: { ftv1?: string } }).extensions?.ftv1;
    expect(typeof ftv1).toBe('string');

    const trace = Trace.decode(Buffer.from(ftv1!, 'base64'));
    expect(trace.durationNs).toBeGreaterThan(0);
    expect(tracedPaths(trace.root!)).toEqual(
      expect.arrayContaining(['creator', 'creator.linkStructure', 'creator.linkStructure.summary.value', 'failing.linkStructure']),
    );
    const failing = trace.root!.child!.find((node) => node.responseName === 'failing')!;
    const failingLinkStructure = failing.child!.find((node) => node.responseName === 'linkStructure')!;
    expect(failingLinkStructure.error?.map((error) => error.message)).toEqual(['The upstream daily quota is used up.']);
  });

  it('on: a bad kolId refused before execution is still BAD_USER_INPUT for a router asking for ftv1, not a 500', async () => {
    const gateway = await setUp({ FEDERATION_TRACING: 'true', MAX_KOL_IDS: '2' });
    for (const refused of ['{ creator(kolId: "x") { kolId } }', '{ creators(kolIds: ["1", "x"]) { kolId } }', '{ creators(kolIds: ["1", "2", "3"]) { kolId } }']) {
      const { status, body } = await gateway.query(refused, undefined, askForTrace);
      expect(status).toBe(200);
      expect(body.data).toBeNull();
      expect(body.errors).toEqual([expect.objectContaining({ extensions: expect.objectContaining({ code: 'BAD_USER_INPUT' }) })]);
      expect(typeof (body as { extensions?: { ftv1?: string } }).extensions?.ftv1).toBe('string');
    }
    expect(gateway.logs.filter((line) => line['level'] === 'error')).toEqual([]);
    expect(upstream!.calls()).toBe(0);
  });

  it('on: an explicit null for a defaulted variable in a non-null argument is BAD_USER_INPUT with a trace, not a 500', async () => {
    const gateway = await setUp({ FEDERATION_TRACING: 'true' });
    const { status, body } = await gateway.query('query ($id: ID = "1") { a: creator(kolId: $id) { kolId } }', { id: null }, askForTrace);
    expect(status).toBe(200);
    expect(body.errors).toEqual([expect.objectContaining({ path: ['a'], extensions: expect.objectContaining({ code: 'BAD_USER_INPUT' }) })]);
    expect(typeof (body as { extensions?: { ftv1?: string } }).extensions?.ftv1).toBe('string');
    expect(gateway.logs.filter((line) => line['level'] === 'error')).toEqual([]);
  });

  it('on: an operation refused whole (over its budget) keeps its error in the trace without the HTTP details', async () => {
    const gateway = await setUp({ FEDERATION_TRACING: 'true', MAX_UPSTREAM_CALLS_PER_OPERATION: '1' });
    const { body } = await gateway.query('{ a: creator(kolId: "41") { linkStructure { fetchedAt } } b: creator(kolId: "42") { linkStructure { fetchedAt } } }', undefined, askForTrace);
    expect(body.errors).toEqual([expect.objectContaining({ extensions: expect.objectContaining({ code: 'UPSTREAM_BUDGET_EXCEEDED' }) })]);
    expect(body.errors![0]!.extensions).not.toHaveProperty('http');
    const trace = Trace.decode(Buffer.from((body as { extensions: { ftv1: string } }).extensions.ftv1, 'base64'));
    const errors = [trace.root!, ...(trace.root!.child ?? [])].flatMap((node) => node.error ?? []);
    expect(errors.map((error) => JSON.parse(error.json!).extensions)).toEqual([
      { code: 'UPSTREAM_BUDGET_EXCEEDED', retryable: false, upstreamCalls: 2, maxUpstreamCalls: 1 },
    ]);
  });

  it('on: a request that does not ask gets no trace', async () => {
    const gateway = await setUp({ FEDERATION_TRACING: 'true' });
    const { body } = await gateway.query(query);
    expect(body.data).toBeTruthy();
    expect(body).not.toHaveProperty('extensions.ftv1');
  });

  it('off (the default): asking for ftv1 gets no trace', async () => {
    const gateway = await setUp({});
    expect(gateway.env.FEDERATION_TRACING).toBe(false);
    const { body } = await gateway.query(query, undefined, askForTrace);
    expect(body.data).toBeTruthy();
    expect(body).not.toHaveProperty('extensions.ftv1');
  });

  it('refuses a value that is not a boolean, naming the variable', () => {
    const result = parseEnv({ FEDERATION_TRACING: 'sometimes' });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.problems.join('\n')).toMatch(/^FEDERATION_TRACING: /);
  });
});
