import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setFlagsFromString } from 'node:v8';

export type ChildRequest = { type: 'cpu' } | { type: 'memory' };

/**
 * What a server under test tells the benchmark over IPC: its port once listening, the CPU time it has
 * used (CPU per request holds up when other work shares the machine; requests per second do not), and
 * its memory after two full, compacting collections (so what is left is what it holds on to).
 */
export function listenForBench(server: Server, cacheEntries: () => number = () => 0) {
  process.on('message', (message: ChildRequest) => {
    if (message.type === 'cpu') {
      const { user, system } = process.cpuUsage();
      process.send?.({ type: 'cpu', micros: user + system });
    } else if (message.type === 'memory') {
      // Compacting collections: live objects are moved together and the pages left empty given back, so
      // a reading is what the process holds, not the free heap its last burst of work happened to leave
      // (which the next burst fills first, and which made RSS growth per entry come out below heap growth).
      // Only for this reading: the process runs on with V8's usual collections.
      setFlagsFromString('--compact-on-every-full-gc');
      globalThis.gc?.();
      globalThis.gc?.();
      setFlagsFromString('--no-compact-on-every-full-gc');
      // V8 returns the freed pages to the OS from a background thread: read right away, RSS still holds
      // them (measured: up to twice the heap for ~300 ms).
      setTimeout(() => process.send?.({ type: 'memory', usage: process.memoryUsage(), cacheEntries: cacheEntries() }), 1_000);
    }
  });
  // Exit normally on a signal, so --cpu-prof and the like get to write their files.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => process.exit(0));
  server.listen(0, '127.0.0.1', () => {
    process.send?.({ type: 'ready', port: (server.address() as AddressInfo).port });
  });
}
