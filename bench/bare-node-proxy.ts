import { createServer } from 'node:http';
import { Pool } from 'undici';
import { listenForBench } from './child-ipc.js';
import { summaryValueOf, upstreamPath } from './workload.js';

/**
 * The floor under the floor: no GraphQL at all. `node:http` in, the same upstream call over an undici pool,
 * the number read from the JSON and written back in the shape the gateway answers. What it adds over calling
 * the upstream directly is the price of one more process and loopback hop on this machine, which any proxy pays.
 */
const upstream = new URL(process.env['BENCH_UPSTREAM_URL'] ?? 'http://127.0.0.1:1');
const pool = new Pool(upstream.origin, { connections: 8 });
const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    const { variables } = JSON.parse(Buffer.concat(chunks).toString()) as { variables: { kolId: string } };
    pool
      .request({
        method: 'GET',
        path: upstreamPath(variables.kolId),
      })
      .then((response) => response.body.json())
      .then((body) => {
        const answer = JSON.stringify({ data: { creator: { linkStructure: { summary: { value: summaryValueOf(body) } } } } });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(answer) });
        res.end(answer);
      })
      .catch(() => {
        res.writeHead(502);
        res.end();
      });
  });
});
listenForBench(server);
