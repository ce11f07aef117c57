import { startBenchUpstream } from './fake-upstream.js';

/**
 * The fake upstream in a process of its own, as the real one is on a machine of its own: a load generator that
 * also answered as the upstream would be woken for the gateway's upstream call as well as for the answer, and
 * charge those wake-ups to the gateway's overhead while a direct call pays neither. Told over IPC to change
 * its latency and asked how many calls it has answered.
 */
type UpstreamRequest = { type: 'latency'; ms: number } | { type: 'calls' };

const upstream = await startBenchUpstream(Number(process.env['BENCH_UPSTREAM_LATENCY_MS'] ?? 0));
process.on('message', (message: UpstreamRequest) => {
  if (message.type === 'latency') {
    upstream.latencyMs = message.ms;
    process.send?.({ type: 'latency' });
  } else if (message.type === 'calls') {
    process.send?.({ type: 'calls', calls: upstream.calls });
  }
});
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => void upstream.close().then(() => process.exit(0)));
process.send?.({ type: 'ready', port: Number(new URL(upstream.url).port) });
