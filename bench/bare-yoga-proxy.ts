import { createServer } from 'node:http';
import { createSchema, createYoga } from 'graphql-yoga';
import { Pool } from 'undici';
import { listenForBench } from './child-ipc.js';
import { summaryValueOf, upstreamPath } from './workload.js';

/**
 * The yardstick for a cache miss: Yoga with its defaults, whose resolver makes the same upstream call over
 * an undici pool and reads the number from the JSON, with no cache, no checks, no validation of the answer,
 * no metrics and no logs. What the gateway adds beyond it is the price of everything that makes it a gateway.
 */
const upstream = new URL(process.env['BENCH_UPSTREAM_URL'] ?? 'http://127.0.0.1:1');
const pool = new Pool(upstream.origin, { connections: 8 });
const yoga = createYoga({
  schema: createSchema({
    typeDefs: /* GraphQL */ `
      type Query { creator(kolId: ID!): Creator! }
      type Creator { linkStructure: LinkStructure }
      type LinkStructure { summary: LinkSummary }
      type LinkSummary { value: Float! }
    `,
    resolvers: {
      Query: {
        creator: async (_root: unknown, { kolId }: { kolId: string }) => {
          const response = await pool.request({
            method: 'GET',
            path: upstreamPath(kolId),
          });
          return { linkStructure: { summary: { value: summaryValueOf(JSON.parse(await response.body.text())) } } };
        },
      },
    },
  }),
});
listenForBench(createServer(yoga));
