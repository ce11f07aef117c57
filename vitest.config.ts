import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: {
    // graphql 16 ships CommonJS (`main`) and ESM (`module`). Node, and so Pothos and Yoga at run time,
    // load the CommonJS one; Vite would pick the ESM one for our files, and graphql-js refuses
    // types from "another module or realm". Use the same copy Node uses.
    alias: [{ find: /^graphql$/, replacement: 'graphql/index.js' }],
  },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 30_000,
    // Tests start their own servers on free loopback ports, so files can run side by side.
    pool: 'forks',
  },
});
