import { createHash } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  existsSync,
  openSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
  ftruncateSync,
} from 'node:fs';
import { LlmboxError } from '../errors.js';
import type { HubSettings } from './config.js';
import { describeRepo, repoUrlPath, type RepoRef } from './repo.js';

/** A file of a repository at a commit, as the hub's tree API lists it. */
export interface HubFile {
  path: string;
  size: number;
  /** The content's sha256 for files in Git LFS (weights), else the git blob sha1: the hub's ETag either way. */
  oid: string;
  lfs: boolean;
}

/** Bytes that arrived; `resumed`: bytes already on disk from an earlier attempt (not fetched now). */
type OnBytes = (n: number, resumed?: boolean) => void;

const MAX_REDIRECTS = 5;
const ATTEMPTS = 5;

/**
 * The hub's HTTP API: a revision's commit, its file list, and resumable, checked downloads. The
 * token goes only to the hub's own origin: a redirect to a CDN or another host is followed without it.
 */
export class HubClient {
  constructor(private readonly settings: HubSettings) {}

  /** The commit a revision points to now. */
  async commit(ref: RepoRef): Promise<string> {
    const url = `${this.settings.endpoint}/api/${ref.type}s/${ref.id}/revision/${encodeURIComponent(ref.revision)}`;
    const info = (await (await this.get(url, ref)).json()) as { sha?: unknown };
    if (typeof info.sha !== 'string' || !/^[0-9a-f]{40}$/.test(info.sha)) {
      throw new LlmboxError(`the hub at ${this.settings.endpoint} answered without a commit for ${describeRepo(ref)}`, {
        field: 'HF_ENDPOINT',
        fix: 'point HF_ENDPOINT at a Hugging Face Hub or a mirror of it',
      });
    }
    return info.sha;
  }

  /** Every file of the repository at a commit (the tree API, following its pages). */
  async files(ref: RepoRef, commit: string): Promise<HubFile[]> {
    const out: HubFile[] = [];
    let url: string | null =
      `${this.settings.endpoint}/api/${ref.type}s/${ref.id}/tree/${commit}?recursive=true&expand=false`;
    while (url) {
      const res = await this.get(url, ref);
      const entries = (await res.json()) as {
        type: string;
        path: string;
        size: number;
        oid: string;
        lfs?: { oid: string; size: number };
      }[];
      for (const e of entries) {
        if (e.type !== 'file') continue;
        out.push(
          e.lfs
            ? { path: e.path, size: e.lfs.size, oid: e.lfs.oid, lfs: true }
            : { path: e.path, size: e.size, oid: e.oid, lfs: false },
        );
      }
      url = nextPage(res.headers.get('link'), url);
    }
    return out;
  }

  /**
   * Downloads a file to `dest`: into `dest.incomplete` first, resumed with a Range request after a
   * broken connection (or a crash: a later pull resumes too), then checked against the hub's hash
   * and renamed into place. A file whose bytes do not match is deleted, never used.
   */
  async download(ref: RepoRef, commit: string, file: HubFile, dest: string, onBytes: OnBytes): Promise<void> {
    const url = `${this.settings.endpoint}/${repoUrlPath(ref)}/resolve/${commit}/${file.path.split('/').map(encodeURIComponent).join('/')}`;
    const part = `${dest}.incomplete`;
    let have = existsSync(part) ? statSync(part).size : 0;
    if (have > file.size) {
      rmSync(part);
      have = 0;
    }
    if (have) onBytes(have, true);
    for (let attempt = 1; have < file.size; attempt++) {
      try {
        have = await this.fetchRange(url, ref, part, have, onBytes);
      } catch (e) {
        // A refusal (404, 401, corrupt bytes) is final; a dropped or refused connection is retried.
        if (e instanceof LlmboxError && !(e instanceof HubUnreachable)) throw e;
        if (attempt >= ATTEMPTS)
          throw e instanceof HubUnreachable
            ? e
            : networkError(this.settings.endpoint, e, `while downloading ${file.path}`);
        await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
        have = existsSync(part) ? statSync(part).size : 0;
      }
    }
    if (!existsSync(part)) closeSync(openSync(part, 'w')); // an empty file
    const actual = await fileHash(part, file);
    if (actual !== file.oid) {
      rmSync(part, { force: true });
      throw new LlmboxError(
        `${file.path} from ${describeRepo(ref)} is corrupt: ${file.lfs ? 'sha256' : 'git sha1'} ${actual}, the hub says ${file.oid}`,
        {
          file: dest,
          fix: 'pull again; if it repeats, the server at HF_ENDPOINT serves wrong bytes',
        },
      );
    }
    renameSync(part, dest);
  }

  /** One GET from byte `from` on, appended to `part`; returns how many bytes `part` holds after it. */
  private async fetchRange(url: string, ref: RepoRef, part: string, from: number, onBytes: OnBytes): Promise<number> {
    const res = await this.get(url, ref, from ? { range: `bytes=${from}-` } : {});
    // 200 to a Range request: the server sent the whole file again.
    const start = res.status === 206 ? from : 0;
    if (start === 0 && from) onBytes(-from, true);
    const fd = openSync(part, start ? 'r+' : 'w');
    let at = start;
    try {
      ftruncateSync(fd, start);
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        writeSync(fd, chunk, 0, chunk.length, at);
        at += chunk.length;
        onBytes(chunk.length);
      }
    } finally {
      closeSync(fd);
    }
    return at;
  }

  /** A GET that follows redirects itself, so that the token is sent only to the hub's origin. */
  private async get(url: string, ref: RepoRef, headers: Record<string, string> = {}): Promise<Response> {
    const origin = new URL(this.settings.endpoint).origin;
    let current = url;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const auth: Record<string, string> =
        this.settings.token && new URL(current).origin === origin
          ? { authorization: `Bearer ${this.settings.token}` }
          : {};
      let res: Response;
      try {
        res = await fetch(current, { headers: { ...headers, ...auth, 'user-agent': 'llmbox' }, redirect: 'manual' });
      } catch (e) {
        throw networkError(this.settings.endpoint, e);
      }
      if (res.status >= 300 && res.status < 400 && res.headers.get('location')) {
        await res.body?.cancel();
        current = new URL(res.headers.get('location')!, current).toString();
        continue;
      }
      if (res.ok) return res;
      throw await hubError(res, ref, url, !!this.settings.token);
    }
    throw new LlmboxError(`more than ${MAX_REDIRECTS} redirects from ${url}`, { field: 'HF_ENDPOINT' });
  }
}

function nextPage(link: string | null, base: string): string | null {
  const m = link && /<([^>]+)>;\s*rel="next"/.exec(link);
  return m ? new URL(m[1], base).toString() : null;
}

/** The hub's errors as llmbox errors: what was refused, and what to do. */
async function hubError(res: Response, ref: RepoRef, url: string, hasToken: boolean): Promise<LlmboxError> {
  const code = res.headers.get('x-error-code');
  const repo = describeRepo(ref);
  await res.body?.cancel();
  if (res.status === 401 || res.status === 403 || code === 'GatedRepo') {
    return new LlmboxError(`the hub refused access to ${repo} (${res.status}${code ? ` ${code}` : ''})`, {
      field: 'HF_TOKEN',
      fix: hasToken
        ? 'this token has no access: accept the model licence on the hub, or use a token that can read it'
        : 'set HF_TOKEN to a token that can read it (private and gated repositories)',
    });
  }
  if (res.status === 404) {
    if (code === 'RevisionNotFound')
      return new LlmboxError(`${repo}: no revision ${ref.revision}`, {
        field: 'revision',
        fix: 'name a branch, tag or commit of the repository',
      });
    if (code === 'EntryNotFound')
      return new LlmboxError(`${repo}: ${new URL(url).pathname} is not in the repository`, { field: 'repository' });
    return new LlmboxError(`${repo}: repository not found on ${new URL(url).origin}`, {
      field: 'repository',
      fix: `check the name${ref.type === 'model' ? ' (data sets: datasets/org/name)' : ''}; private repositories need HF_TOKEN`,
    });
  }
  return new LlmboxError(`the hub answered ${res.status} for ${url}`, {
    field: 'HF_ENDPOINT',
    fix: res.status >= 500 ? 'the hub is failing: pull again later (finished files are kept)' : 'check HF_ENDPOINT',
  });
}

/** The hub could not be reached or the connection broke: worth another attempt. */
class HubUnreachable extends LlmboxError {}

function networkError(endpoint: string, e: unknown, during = ''): HubUnreachable {
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  const why = cause?.code ?? cause?.message ?? (e as Error).message;
  return new HubUnreachable(`cannot reach the hub at ${endpoint}${during ? ` ${during}` : ''}: ${why}`, {
    field: 'HF_ENDPOINT',
    fix: 'check the network or HF_ENDPOINT (finished files are kept; the next pull resumes); with the files cached, set HF_HUB_OFFLINE=1',
  });
}

/** The hub's hash of a file: sha256 of the content for LFS files, the git blob sha1 otherwise. */
function fileHash(path: string, file: HubFile): Promise<string> {
  const h = createHash(file.lfs ? 'sha256' : 'sha1');
  if (!file.lfs) h.update(`blob ${statSync(path).size}\0`);
  return new Promise((resolve, reject) => {
    createReadStream(path)
      .on('data', (d) => h.update(d))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}
