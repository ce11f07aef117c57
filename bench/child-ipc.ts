import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export type ChildRequest = { type: 'cpu' } | { type: 'memory' };

/**
 * What a server under test tells the benchmark over IPC: its port once listening, the CPU time it has
 * used (CPU per request holds up when other work shares the machine; requests per second do not), and
 * its memory after two full collections (so what is left is what it holds on to).
 */
export function listenForBench(server: Server, cacheEntries: () => number = () => 0) {
  process.on('message', (message: ChildRequest) => {
    if (message.type === 'cpu') {
      const { user, system } = process.cpuUsage();
      process.send?.({ type: 'cpu', micros: user + system });
    } else if (message.type === 'memory') {
      globalThis.gc?.();
      globalThis.gc?.();
      process.send?.({ type: 'memory', usage: process.memoryUsage(), cacheEntries: cacheEntries() });
    }
  });
  // Exit normally on a signal, so --cpu-prof and the like get to write their files.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => process.exit(0));
  server.listen(0, '127.0.0.1', () => {
    process.send?.({ type: 'ready', port: (server.address() as AddressInfo).port });
  });
}
