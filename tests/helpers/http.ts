import { spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** An HTTP server on a free loopback port; `close` ends it and its connections. */
export async function listen(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ url: string; server: Server; close: () => Promise<void> }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * A proxy in front of an OpenAI-compatible server that answers some requests itself with an error
 * (`fault` returns the status for the n-th request, or null to forward it), counting what it saw.
 */
export async function faultyProxy(
  upstream: string,
  fault: (n: number, body: string) => number | { status: number; message: string } | null,
) {
  const counts = { requests: 0, forwarded: 0, faults: 0, ok: 0 };
  const proxy = await listen(
    (req, res) =>
      void forward(req, res).catch((e) => {
        res.writeHead(502, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: `proxy: ${(e as Error).message}` } }));
      }),
  );
  async function forward(req: IncomingMessage, res: ServerResponse) {
    const body = await readBody(req);
    const n = counts.requests++;
    const f = fault(n, body);
    if (f !== null) {
      const { status, message } = typeof f === 'number' ? { status: f, message: `injected ${f}` } : f;
      counts.faults++;
      res.writeHead(status, {
        'content-type': 'application/json',
        ...(status === 429 ? { 'retry-after-ms': '1' } : {}),
      });
      res.end(JSON.stringify({ error: { message, type: 'test' } }));
      return;
    }
    counts.forwarded++;
    const r = await fetch(upstream + req.url, {
      method: req.method,
      headers: { 'content-type': 'application/json', authorization: req.headers.authorization ?? '' },
      body: req.method === 'POST' ? body : undefined,
    });
    const text = await r.text();
    if (r.ok) counts.ok++;
    res.writeHead(r.status, { 'content-type': 'application/json' });
    res.end(text);
  }
  return { ...proxy, counts };
}

/** Runs the CLI without blocking this process (so servers in it keep answering). */
export function runCli(
  bin: string,
  args: string[],
  env: Record<string, string | undefined> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, LLMBOX_QUIET: '1', ...env } });
    let stdout = '',
      stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
