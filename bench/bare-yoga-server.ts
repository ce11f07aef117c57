import { createServer } from 'node:http';
import { createSchema, createYoga } from 'graphql-yoga';
import { listenForBench } from './child-ipc.js';

/** The yardstick: Yoga with its defaults, answering `{ hello }`, on the same machine and Node. */
const yoga = createYoga({
  schema: createSchema({ typeDefs: 'type Query { hello: String! }', resolvers: { Query: { hello: () => 'world' } } }),
});
listenForBench(createServer(yoga));
