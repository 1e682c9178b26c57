import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join, relative } from 'node:path';
import { listen } from './http.js';

/** A repository the mock serves: its files read from a folder, LFS for weights as on the real hub. */
export interface MockRepo {
  type: 'model' | 'dataset';
  id: string;
  dir: string;
  /** Only requests with `Authorization: Bearer <token>` see it (401 otherwise, as for a gated repo). */
  token?: string;
}

interface Entry {
  path: string;
  data: Buffer;
  lfs: boolean;
  oid: string;
}

export interface MockHubOptions {
  /** Tree API page size (the real hub pages long listings with a Link header). */
  pageSize?: number;
  /** The first download of this file stops after half its bytes and the connection is cut. */
  breakOnce?: string;
  /** This file's bytes are served with one byte flipped. */
  corrupt?: string;
  /** Whether the CDN answers Range requests (the hub's does). */
  ranges?: boolean;
}

export interface SeenRequest {
  method: string;
  url: string;
  range?: string;
  authorization?: string;
  host: 'hub' | 'cdn';
}

const gitSha1 = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function entries(dir: string): Entry[] {
  return (readdirSync(dir, { recursive: true }) as string[])
    .filter((p) => statSync(join(dir, p)).isFile())
    .sort()
    .map((p) => {
      const data = readFileSync(join(dir, p));
      const lfs = /\.(safetensors|bin|gguf|parquet)$/.test(p) || data.length > 10 * 2 ** 20;
      return { path: relative(dir, join(dir, p)), data, lfs, oid: lfs ? sha256(data) : gitSha1(data) };
    });
}

/**
 * A Hugging Face Hub on loopback with the real one's URL layout and headers: /api/{models,datasets}/ID/
 * revision/REV and /tree/SHA (paged), /ID/resolve/REV/PATH (datasets/ID/... for data sets) answering
 * small files itself (ETag = git sha1, X-Repo-Commit) and redirecting LFS files (X-Linked-Etag = sha256,
 * X-Linked-Size) to a CDN on another port that serves byte ranges; 404s carry X-Error-Code.
 */
export async function mockHub(repos: MockRepo[], opts: MockHubOptions = {}) {
  const seen: SeenRequest[] = [];
  const commit = randomBytes(20).toString('hex');
  const files = new Map(repos.map((r) => [`${r.type}:${r.id}`, entries(r.dir)]));
  const blobs = new Map<string, Entry>();
  for (const list of files.values()) for (const e of list) blobs.set(e.oid, e);
  let broken = false;
  const record = (req: IncomingMessage, host: SeenRequest['host']) =>
    seen.push({
      method: req.method!,
      url: req.url!,
      range: req.headers.range,
      authorization: req.headers.authorization,
      host,
    });

  const send = (req: IncomingMessage, res: ServerResponse, e: Entry, headers: Record<string, string>) => {
    const data = opts.corrupt === e.path ? Buffer.from(e.data) : e.data;
    if (opts.corrupt === e.path) data[data.length >> 1] ^= 0xff;
    let start = 0;
    const m = opts.ranges !== false && req.headers.range ? /^bytes=(\d+)-$/.exec(req.headers.range) : null;
    if (m) start = Number(m[1]);
    const body = data.subarray(start);
    res.writeHead(m ? 206 : 200, {
      ...headers,
      'content-length': String(body.length),
      'accept-ranges': opts.ranges === false ? 'none' : 'bytes',
      ...(m ? { 'content-range': `bytes ${start}-${data.length - 1}/${data.length}` } : {}),
    });
    if (req.method === 'HEAD') return res.end();
    if (opts.breakOnce === e.path && !broken) {
      broken = true;
      res.write(body.subarray(0, body.length >> 1));
      setTimeout(() => res.socket?.destroy(), 20);
      return;
    }
    res.end(body);
  };

  const cdn = await listen((req, res) => {
    record(req, 'cdn');
    const e = blobs.get(req.url!.replace(/^\/blobs\//, ''));
    if (!e) return void res.writeHead(404).end();
    send(req, res, e, { etag: `"${e.oid}"` });
  });

  const fail = (res: ServerResponse, status: number, code: string) =>
    void res
      .writeHead(status, { 'content-type': 'application/json', 'x-error-code': code })
      .end(JSON.stringify({ error: code }));

  const hub = await listen((req, res) => {
    record(req, 'hub');
    const url = new URL(req.url!, 'http://hub');
    const api = /^\/api\/(models|datasets)\/(.+?)\/(revision|tree)\/([^/]+)$/.exec(url.pathname);
    const resolve = /^\/(datasets\/)?(.+?)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    const type = api ? (api[1] === 'datasets' ? 'dataset' : 'model') : resolve?.[1] ? 'dataset' : 'model';
    const id = api?.[2] ?? resolve?.[2];
    const repo = repos.find((r) => r.type === type && r.id === id);
    if (!repo) return fail(res, 404, 'RepoNotFound');
    if (repo.token && req.headers.authorization !== `Bearer ${repo.token}`) return fail(res, 401, 'GatedRepo');
    const list = files.get(`${type}:${id}`)!;
    const rev = api?.[4] ?? resolve![3];
    if (rev !== 'main' && rev !== commit) return fail(res, 404, 'RevisionNotFound');
    if (api?.[3] === 'revision') {
      return void res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ id, sha: commit, siblings: list.map((e) => ({ rfilename: e.path })) }));
    }
    if (api) {
      const size = opts.pageSize ?? 1000;
      const cursor = Number(url.searchParams.get('cursor') ?? 0);
      const page = list.slice(cursor, cursor + size).map((e) => ({
        type: 'file',
        path: e.path,
        size: e.lfs ? 134 : e.data.length,
        oid: e.lfs ? gitSha1(Buffer.from('pointer')) : e.oid,
        ...(e.lfs ? { lfs: { oid: e.oid, size: e.data.length, pointerSize: 134 } } : {}),
      }));
      const next =
        cursor + size < list.length
          ? { link: `<${url.pathname}?recursive=true&cursor=${cursor + size}>; rel="next"` }
          : {};
      return void res.writeHead(200, { 'content-type': 'application/json', ...next }).end(JSON.stringify(page));
    }
    const e = list.find((x) => x.path === decodeURIComponent(resolve![4]));
    if (!e) return fail(res, 404, 'EntryNotFound');
    if (e.lfs) {
      res.writeHead(302, {
        location: `${cdn.url}/blobs/${e.oid}`,
        'x-repo-commit': commit,
        'x-linked-etag': `"${e.oid}"`,
        'x-linked-size': String(e.data.length),
        etag: `"${gitSha1(Buffer.from('pointer'))}"`,
      });
      return void res.end();
    }
    send(req, res, e, { etag: `"${e.oid}"`, 'x-repo-commit': commit });
  });

  return {
    url: hub.url,
    commit,
    seen,
    /** Downloads of file contents (hub answers and CDN answers), not API calls. */
    downloads: () => seen.filter((r) => r.host === 'cdn' || r.url.includes('/resolve/')),
    close: async () => {
      await hub.close();
      await cdn.close();
    },
  };
}
