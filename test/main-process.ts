import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

export interface GatewayProcess {
  child: ChildProcess;
  url: string;
  stdout: () => string;
  stderr: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Runs src/main.ts as `npm start` would (through tsx instead of a build), with only the given variables. */
export function runMain(vars: Record<string, string>, preload: string[] = []) {
  const child = spawn(process.execPath, ['--import', 'tsx', ...preload.flatMap((module) => ['--import', module]), 'src/main.ts'], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', ...vars },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}

/** Starts the gateway and waits for its "listening" log line. */
export async function startMain(vars: Record<string, string>, timeoutMs = 15_000): Promise<GatewayProcess> {
  const run = runMain(vars);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const match = /"msg":"gateway listening","url":"([^"]+)"/.exec(run.stdout());
    if (match) {
      return {
        child: run.child,
        url: match[1]!.replace(/\/graphql$/, ''),
        stdout: run.stdout,
        stderr: run.stderr,
        async stop(signal = 'SIGTERM') {
          if (run.child.exitCode === null) run.child.kill(signal);
          return run.exited;
        },
      };
    }
    if (run.child.exitCode !== null || Date.now() > deadline) {
      run.child.kill('SIGKILL');
      throw new Error(`gateway did not start:\n${run.stdout()}\n${run.stderr()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
