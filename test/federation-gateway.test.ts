import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { buildSubgraphSchema } from '@apollo/subgraph';
import { createGatewayRuntime, type GatewayRuntime } from '@graphql-hive/gateway-runtime';
import httpTransport from '@graphql-mesh/transport-http';
import { composeServices, compositionHasErrors } from '@theguild/federation-composition';
import { parse } from 'graphql';
import { createYoga } from 'graphql-yoga';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestGateway, type TestGateway } from './gateway.js';
import { reply, startFakeUpstream, type FakeUpstream } from './fake-upstream.js';

/**
 * Another team's subgraph, written for this test: it knows campaigns and which creators run them,
 * by kolId only, and leaves `linkStructure` to the gateway's subgraph.
 */
const campaignsTypeDefs = /* GraphQL */ `
  extend schema @link(url: "https://specs.apollo.dev/federation/v2.0", import: ["@key"])

  type Campaign @key(fields: "id") {
    id: ID!
    name: String!
    creators: [Creator!]!
  }

  type Creator @key(fields: "kolId", resolvable: false) {
    kolId: ID!
  }

  type Query {
    campaign(id: ID!): Campaign
    campaigns: [Campaign!]!
  }
`;

interface Campaign {
  id: string;
  name: string;
  kolIds: string[];
}

const campaigns: Campaign[] = [
  { id: 'spring', name: 'Spring launch', kolIds: ['101', '102', '103'] },
  { id: 'summer', name: 'Summer sale', kolIds: ['103', '104', '101', '101'] },
  // 13 fails upstream (quota), 105 answers.
  { id: 'autumn', name: 'Autumn teaser', kolIds: ['13', '105'] },
];

function createCampaignsSubgraph() {
  const schema = buildSubgraphSchema([
    {
      typeDefs: parse(campaignsTypeDefs),
      resolvers: {
        Query: {
          campaign: (_root: unknown, args: { id: string }) => campaigns.find((campaign) => campaign.id === args.id) ?? null,
          campaigns: () => campaigns.filter((campaign) => campaign.id !== 'autumn'),
        },
        Campaign: {
          creators: (campaign: Campaign) => campaign.kolIds.map((kolId) => ({ kolId })),
        },
      },
    },
  ]);
  return createYoga({ schema, logging: 'error' });
}

interface Served {
  url: string;
  /** HTTP requests the server received. */
  requests: number;
  close(): Promise<void>;
}

async function serveOnLoopback(handler: RequestListener): Promise<Served> {
  const server: Server = createServer(handler);
  const served = {
    url: '',
    requests: 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  server.on('request', () => {
    served.requests += 1;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  served.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`;
  return served;
}

async function fetchSdl(url: string): Promise<string> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: '{ _service { sdl } }' }),
  });
  const body = (await response.json()) as { data: { _service: { sdl: string } } };
  return body.data._service.sdl;
}

describe('composed with another subgraph behind a real federation gateway', () => {
  let upstream: FakeUpstream;
  let gateway: TestGateway;
  let creatorsSubgraph: Served;
  let campaignsSubgraph: Served;
  let supergraphSdl: string;
  let router: GatewayRuntime;

  async function viaRouter(query: string) {
    const response = await router.fetch('http://router.test/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json' },
      body: JSON.stringify({ query }),
    });
    return (await response.json()) as {
      data?: any;
      errors?: Array<{ message: string; path?: Array<string | number>; extensions?: Record<string, unknown> }>;
    };
  }

  beforeAll(async () => {
    upstream = await startFakeUpstream((request) => (request.kolId === '13' ? reply.business(303) : reply.ok()));
    gateway = createTestGateway(upstream.url);
    creatorsSubgraph = await serveOnLoopback(gateway.app);
    campaignsSubgraph = await serveOnLoopback(createCampaignsSubgraph());

    // Composed the way `rover supergraph compose` does it from subgraph URLs: each subgraph's own SDL.
    const composition = composeServices([
      { name: 'creators', url: creatorsSubgraph.url, typeDefs: parse(await fetchSdl(creatorsSubgraph.url)) },
      { name: 'campaigns', url: campaignsSubgraph.url, typeDefs: parse(await fetchSdl(campaignsSubgraph.url)) },
    ]);
    if (compositionHasErrors(composition)) {
      throw new Error(`composition failed:\n${composition.errors.map((error) => error.message).join('\n')}`);
    }
    supergraphSdl = composition.supergraphSdl;
    // The transport is passed in rather than imported by name at run time, so a missing package fails here.
    // Errors only: a broken router setup then shows its cause, not just the masked "Unexpected error.".
    router = createGatewayRuntime({ supergraph: supergraphSdl, transports: { http: httpTransport }, logging: 'error' });
  });

  afterAll(async () => {
    await router?.dispose();
    await campaignsSubgraph?.close();
    await creatorsSubgraph?.close();
    await gateway?.close();
    await upstream?.close();
  });

  beforeEach(() => {
    upstream.reset();
    gateway.cache.clear();
    creatorsSubgraph.requests = 0;
  });

  it('composes: Creator joins both subgraphs on its kolId key', () => {
    expect(supergraphSdl).toMatch(/type Creator\s+@join__type\(graph: CAMPAIGNS, key: "kolId", resolvable: false\)/);
    expect(supergraphSdl).toContain('@join__type(graph: CREATORS, key: "kolId")');
    expect(supergraphSdl).toMatch(/linkStructure\(.*acceptCache: Boolean.*\): LinkStructure @join__field\(graph: CREATORS\)/s);
  });

  it('campaign { creators { linkStructure } }: N creators cost N upstream calls', async () => {
    const body = await viaRouter(/* GraphQL */ `
      {
        campaign(id: "spring") {
          name
          creators { kolId linkStructure { authorLinkType summary { value } buckets { stage value } } }
        }
      }
    `);
    expect(body.errors).toBeUndefined();
    expect(body.data.campaign.name).toBe('Spring launch');
    expect(body.data.campaign.creators.map((creator: { kolId: string }) => creator.kolId)).toEqual(['101', '102', '103']);
    expect(body.data.campaign.creators[0].linkStructure).toEqual({
      authorLinkType: '传播',
      summary: { value: 9875885 },
      buckets: [
        { stage: 'AWARE', value: 6769084 },
        { stage: 'INTERESTED', value: 2103463 },
        { stage: 'LIKE', value: 1003338 },
        { stage: 'FOLLOW', value: 0 },
      ],
    });
    expect(upstream.calls()).toBe(3);
    for (const kolId of ['101', '102', '103']) expect(upstream.calls(kolId)).toBe(1);
  });

  it('creators repeated across campaigns are fetched once per operation, and not at all once cached', async () => {
    const query = /* GraphQL */ `{ campaigns { id creators { kolId linkStructure { summary { value } } } } }`;
    const first = await viaRouter(query);
    expect(first.errors).toBeUndefined();
    expect(
      first.data.campaigns.map((campaign: { id: string; creators: Array<{ kolId: string }> }) => [
        campaign.id,
        campaign.creators.map((creator) => creator.kolId),
      ]),
    ).toEqual([
      ['spring', ['101', '102', '103']],
      ['summer', ['103', '104', '101', '101']],
    ]);
    for (const campaign of first.data.campaigns) {
      for (const creator of campaign.creators) expect(creator.linkStructure.summary.value).toBe(9875885);
    }
    // 7 mentions, 4 creators: 4 upstream calls, from one `_entities` request to this subgraph.
    expect(upstream.calls()).toBe(4);
    for (const kolId of ['101', '102', '103', '104']) expect(upstream.calls(kolId)).toBe(1);
    expect(creatorsSubgraph.requests).toBe(1);

    const second = await viaRouter(query);
    expect(second).toEqual(first);
    expect(upstream.calls()).toBe(4);
  });

  it('a failing creator is null with its coded error; the other creators still resolve', async () => {
    const body = await viaRouter(/* GraphQL */ `
      { campaign(id: "autumn") { creators { kolId linkStructure { summary { value } } } } }
    `);
    expect(body.data.campaign.creators).toEqual([
      { kolId: '13', linkStructure: null },
      { kolId: '105', linkStructure: { summary: { value: 9875885 } } },
    ]);
    expect(body.errors).toHaveLength(1);
    expect(body.errors![0]).toMatchObject({
      message: 'The upstream daily quota is used up.',
      extensions: { code: 'UPSTREAM_QUOTA_EXCEEDED', retryable: false, kolId: '13', upstreamCode: 303 },
    });
    // This router drops the list index when it maps an `_entities` error back onto the operation;
    // `extensions.kolId` still says which creator failed.
    expect(body.errors![0]!.path?.filter((key) => typeof key === 'string')).toEqual(['campaign', 'creators', 'linkStructure']);
    expect(upstream.calls()).toBe(2);
  });
});
