import { createServer } from 'node:http';
import { listenForBench } from './child-ipc.js';

/**
 * The floor under bare Yoga `{ hello }`: `node:http` reading the JSON body and writing the same answer, with no
 * GraphQL. The miss phase times a round trip to it, and to bare Yoga, right after another and after an idle pause.
 */
const answer = JSON.stringify({ data: { hello: 'world' } });
const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    JSON.parse(Buffer.concat(chunks).toString());
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(answer) });
    res.end(answer);
  });
});
listenForBench(server);
