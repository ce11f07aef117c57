import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Where tsconfig.bench.json puts the compiled servers. */
const buildDir = `${root}node_modules/.cache/bench-build/`;

/**
 * Compiles the servers the bench measures (tsconfig.bench.json) and returns a function naming the compiled
 * script for a bench/*.ts server: they run on plain node, as the production image runs dist/main.js, not
 * through tsx (whose keepNames helper and loader thread production does not have).
 */
export function buildServers(): (script: string) => string {
  execFileSync(process.execPath, [`${root}node_modules/typescript/bin/tsc`, '-p', `${root}tsconfig.bench.json`], { stdio: 'inherit' });
  // Node looks for a package.json no further up than node_modules: say the build is ES modules, as the repository is.
  writeFileSync(`${buildDir}package.json`, '{ "type": "module" }\n');
  return (script) => `${buildDir}${script.replace(/\.ts$/, '.js')}`;
}
