// Preloaded (`--import`) by test/main.test.ts: holds up loading src/gateway.ts for 1.5 s, after writing a line to stderr, so
// a signal can be sent while the gateway's modules are still loading (a real start-up takes about a second).
import { register } from 'node:module';

register(
  'data:text/javascript,' +
    encodeURIComponent(`
      export async function resolve(specifier, context, nextResolve) {
        if (specifier === './gateway.js') {
          process.stderr.write('loading-gateway\\n');
          await new Promise((resolve) => setTimeout(resolve, 1500));
        }
        return nextResolve(specifier, context);
      }
    `),
);
