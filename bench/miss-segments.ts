import { subscribe } from 'node:diagnostics_channel';

/**
 * Loaded into a server's process (the gateway's, the bare Yoga proxy's) by bench/trace-miss.ts (`--import`): times each segment of a GraphQL request
 * that makes one upstream call, from Node's and undici's diagnostics channels, so nothing in src/ is touched.
 * Meant for one request at a time (as trace-miss sends them): a request is followed from its start to its
 * response, and only the first upstream call in between is its own. Asked over IPC, it answers the medians and starts over.
 */
interface Timed {
  started: number;
  callCreated?: number;
  answerHeaders?: number;
  answerEnded?: number;
}

const now = () => performance.now();
let current: Timed | undefined;
const finished: Array<Required<Timed> & { responded: number }> = [];

subscribe('http.server.request.start', (message) => {
  const { request } = message as { request: { url?: string } };
  current = request.url?.startsWith('/graphql') ? { started: now() } : undefined;
});
subscribe('undici:request:create', () => {
  if (current && current.callCreated === undefined) current.callCreated = now();
});
subscribe('undici:request:headers', () => {
  if (current && current.answerHeaders === undefined) current.answerHeaders = now();
});
subscribe('undici:request:trailers', () => {
  if (current && current.answerEnded === undefined) current.answerEnded = now();
});
subscribe('http.server.response.finish', () => {
  const timed = current;
  current = undefined;
  if (timed?.callCreated === undefined || timed.answerHeaders === undefined || timed.answerEnded === undefined) return;
  finished.push({ ...(timed as Required<Timed>), responded: now() });
});

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? Math.round(sorted[Math.floor(sorted.length / 2)]! * 1000) / 1000 : Number.NaN;
};

process.on('message', (message: { type: string }) => {
  if (message.type !== 'segments') return;
  const taken = finished.splice(0);
  process.send?.({
    type: 'segments',
    requests: taken.length,
    // Request arrived (headers read) to the upstream call created: body, parsing, checks, planning, resolvers.
    beforeCallMs: median(taken.map((t) => t.callCreated - t.started)),
    // The call created to the answer's headers: the upstream's own latency, the two loopback hops and waking up.
    upstreamMs: median(taken.map((t) => t.answerHeaders - t.callCreated)),
    // The answer's headers to the response handed to the socket: body, validation, cache, GraphQL result, serializing.
    afterAnswerMs: median(taken.map((t) => t.responded - t.answerHeaders)),
    // Both ends together, request by request: what the server itself spends on a miss.
    ownMs: median(taken.map((t) => t.callCreated - t.started + (t.responded - t.answerHeaders))),
  });
});
