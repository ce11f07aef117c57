import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { startMain } from './main-process.js';

/** The script the image's HEALTHCHECK runs with `node -e`, as written in the Dockerfile. */
async function healthcheckScript(): Promise<string> {
  const dockerfile = await readFile(new URL('../Dockerfile', import.meta.url), 'utf8');
  const cmd = /HEALTHCHECK [^\n]*\\\n\s+CMD (\[[^\n]*\])/.exec(dockerfile);
  const argv = JSON.parse(cmd![1]!) as string[];
  expect(argv.slice(0, 2)).toEqual(['node', '-e']);
  return argv[2]!;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function runHealthcheck(script: string, port: string): Promise<number | null> {
  const child = spawn(process.execPath, ['-e', script], { env: { PATH: process.env.PATH ?? '', PORT: port }, stdio: 'ignore' });
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

describe('the Dockerfile HEALTHCHECK', () => {
  it('finds the gateway on the PORT the gateway itself reads, padding included (env.ts trims it)', async () => {
    const script = await healthcheckScript();
    const port = await freePort();
    // A value from a compose file or secret template with blanks around it: the gateway listens on the port.
    const padded = ` ${port} `;
    const gateway = await startMain({ JUSTONEAPI_TOKEN: '', PORT: padded });
    try {
      expect(gateway.url).toBe(`http://127.0.0.1:${port}`);
      expect(await runHealthcheck(script, String(port))).toBe(0);
      expect(await runHealthcheck(script, padded)).toBe(0);
    } finally {
      await gateway.stop();
    }
  }, 30_000);
});
