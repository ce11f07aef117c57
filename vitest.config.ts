import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 30_000,
    // Tests start their own servers on free loopback ports, so files can run side by side.
    pool: 'forks',
  },
});
