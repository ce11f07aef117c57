import { createServer, type ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { keepAliveDrain } from '../src/keep-alive-drain.js';

/** One keep-alive request over a raw socket: the response head as sent. */
async function headOf(respond: (res: ServerResponse) => void, draining: boolean): Promise<string> {
  const { ServerResponse: Response, drain } = keepAliveDrain();
  const server = createServer({ ServerResponse: Response }, (_req, res) => {
    try {
      respond(res);
    } catch (error) {
      res.statusCode = 599;
      res.end(String(error));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(() => {
    server.closeAllConnections();
    server.close();
  });
  if (draining) drain();
  const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
  socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
  let text = '';
  await new Promise<void>((resolve) => {
    socket.on('data', (chunk) => {
      text += chunk.toString();
      if (text.includes('\r\n\r\n')) resolve();
    });
  });
  socket.destroy();
  return text.split('\r\n\r\n')[0]!.toLowerCase();
}

const shapes: Array<[string, (res: ServerResponse) => void]> = [
  ['(status) after setHeader', (res) => { res.setHeader('Connection', 'keep-alive'); res.writeHead(200); res.end('x'); }],
  ['implicit (end only) after setHeader', (res) => { res.setHeader('Connection', 'keep-alive'); res.end('x'); }],
  ['(status, headers object)', (res) => { res.writeHead(200, { Connection: 'keep-alive', 'content-length': '1' }); res.end('x'); }],
  ['(status, statusText, headers object)', (res) => { res.writeHead(200, 'Fine', { Connection: 'keep-alive', 'content-length': '1' }); res.end('x'); }],
  ['(status, flat array)', (res) => { res.writeHead(200, ['Connection', 'keep-alive', 'content-length', '1']); res.end('x'); }],
  ['(status, array of pairs)', (res) => { (res.writeHead as (...a: unknown[]) => void)(200, [['Connection', 'keep-alive'], ['content-length', '1']]); res.end('x'); }],
  ['(status, statusText, flat array) with a header set before', (res) => { res.setHeader('x-a', '1'); res.writeHead(200, 'Fine', ['Connection', 'keep-alive', 'content-length', '1']); res.end('x'); }],
  // Node accepts this shape: a non-string second argument is the headers when the third is nullish.
  ['(status, headers object, undefined)', (res) => { (res.writeHead as (...a: unknown[]) => void)(200, { Connection: 'keep-alive', 'content-length': '1' }, undefined); res.end('x'); }],
];

describe('keepAliveDrain: every writeHead shape Node accepts', () => {
  for (const [name, respond] of shapes) {
    it(`draining, ${name}: Connection: close, no keep-alive`, async () => {
      const head = await headOf(respond, true);
      expect(head).toMatch(/^http\/1\.1 200/);
      expect(head).toContain('connection: close');
      expect(head).not.toContain('keep-alive');
    });
    it(`not draining, ${name}: unchanged (keep-alive)`, async () => {
      const head = await headOf(respond, false);
      expect(head).toMatch(/^http\/1\.1 200/);
      expect(head).toContain('connection: keep-alive');
      expect(head).not.toContain('close');
    });
  }
});
