import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import picomatch from 'picomatch';
import { LlmboxError } from '../errors.js';
import { writeFileAtomic } from '../util/fs.js';
import { HubClient, type HubFile } from './client.js';
import { hubSettings, type HubSettings } from './config.js';
import { cacheFolderName, describeRepo, parseRepo, type RepoType } from './repo.js';

export interface PullProgress {
  file: string;
  filesDone: number;
  filesTotal: number;
  bytesDone: number;
  bytesTotal: number;
}

export interface PullOptions {
  /** The repository's kind when the spec does not say (`datasets/...` does). */
  type?: RepoType;
  /** Glob patterns of the files to fetch (all, else). */
  include?: string[];
  /** Glob patterns of files to leave out. */
  exclude?: string[];
  onProgress?: (p: PullProgress) => void;
  /** Defaults to the environment (HF_ENDPOINT, HF_TOKEN, HF_HUB_CACHE / HF_HOME, HF_HUB_OFFLINE). */
  settings?: HubSettings;
}

export interface PullResult {
  /** The snapshot folder: the repository's files at `commit`, as a model or data folder. */
  dir: string;
  repo: string;
  commit: string;
  files: { path: string; size: number; downloaded: boolean }[];
  bytesDownloaded: number;
}

/**
 * Weights in formats llmbox does not read, left out of a model pull when safetensors are there (as
 * huggingface_hub users do with allow_patterns): a 7B repository often holds the same weights 3 times.
 */
const OTHER_WEIGHTS = [
  '**/*.bin',
  '**/*.pt',
  '**/*.pth',
  '**/*.h5',
  '**/*.msgpack',
  '**/*.ckpt',
  '**/*.ot',
  '**/*.onnx',
  '**/*.onnx_data',
  '**/*.tflite',
  '**/*.mlmodel',
  '**/*.gguf',
  'original/**',
  'onnx/**',
  'coreml/**',
  'openvino/**',
];

/**
 * Fetches a repository (a model folder or a data set's files) into the cache, laid out as
 * huggingface_hub lays it out: `blobs/<hash>`, `snapshots/<commit>/<path>` linking to them,
 * `refs/<revision>` holding the commit; so Python tools and llmbox share one cache. Files already
 * there are not fetched again; a pull cut short resumes where it stopped.
 */
export async function pull(spec: string, opts: PullOptions = {}): Promise<PullResult> {
  const ref = parseRepo(spec, opts.type);
  const settings = opts.settings ?? hubSettings();
  const repoDir = join(settings.cacheDir, cacheFolderName(ref));
  if (settings.offline) return cached(repoDir, ref.revision, describeRepo(ref));
  const client = new HubClient(settings);
  const commit = await client.commit(ref);
  if (ref.revision !== commit) writeFileAtomic(join(repoDir, 'refs', ref.revision), commit);
  const all = await client.files(ref, commit);
  const wanted = select(all, ref.type, opts);
  if (!wanted.length) {
    throw new LlmboxError(`${describeRepo(ref)}: no file matches`, {
      field: '--include',
      fix: `the repository holds ${all
        .slice(0, 8)
        .map((f) => f.path)
        .join(', ')}${all.length > 8 ? ', ...' : ''}`,
    });
  }
  const snapshot = join(repoDir, 'snapshots', commit);
  const progress = {
    file: '',
    filesDone: 0,
    filesTotal: wanted.length,
    bytesDone: 0,
    bytesTotal: wanted.reduce((a, f) => a + f.size, 0),
  };
  const files: PullResult['files'] = [];
  let bytesDownloaded = 0;
  for (const f of wanted) {
    progress.file = f.path;
    const blob = join(repoDir, 'blobs', f.oid);
    const fetched = !(existsSync(blob) && statSync(blob).size === f.size);
    if (fetched) {
      mkdirSync(dirname(blob), { recursive: true });
      await client.download(ref, commit, f, blob, (n, resumed) => {
        progress.bytesDone += n;
        if (!resumed) bytesDownloaded += n;
        opts.onProgress?.(progress);
      });
    } else progress.bytesDone += f.size;
    link(blob, join(snapshot, f.path));
    files.push({ path: f.path, size: f.size, downloaded: fetched });
    progress.filesDone++;
    opts.onProgress?.(progress);
  }
  return { dir: snapshot, repo: describeRepo(ref), commit, files, bytesDownloaded };
}

function select(all: HubFile[], type: RepoType, opts: PullOptions): HubFile[] {
  const include = opts.include?.length ? picomatch(opts.include, { dot: true }) : () => true;
  const hasSafetensors = all.some((f) => f.path.endsWith('.safetensors'));
  const exclude = [
    ...(opts.exclude ?? []),
    ...(type === 'model' && hasSafetensors && !opts.include?.length ? OTHER_WEIGHTS : []),
  ];
  const excluded = exclude.length ? picomatch(exclude, { dot: true }) : () => false;
  return all.filter((f) => include(f.path) && !excluded(f.path) && !f.path.split('/').includes('..'));
}

/** snapshots/<commit>/<path> -> ../../blobs/<hash>, relative as huggingface_hub makes it; a copy where links are refused. */
function link(blob: string, target: string): void {
  mkdirSync(dirname(target), { recursive: true });
  rmSync(target, { force: true });
  try {
    symlinkSync(relative(dirname(target), blob), target);
  } catch {
    copyFileSync(blob, target);
  }
}

/** HF_HUB_OFFLINE: the snapshot the cache holds for a revision, without a request. */
function cached(repoDir: string, revision: string, repo: string): PullResult {
  const refFile = join(repoDir, 'refs', revision);
  const commit = existsSync(refFile) ? readFileSync(refFile, 'utf8').trim() : revision;
  const dir = join(repoDir, 'snapshots', commit);
  if (!existsSync(dir)) {
    throw new LlmboxError(`${repo} is not in the cache and HF_HUB_OFFLINE is set`, {
      file: repoDir,
      field: 'HF_HUB_OFFLINE',
      fix: 'pull it once with the network (unset HF_HUB_OFFLINE), or point HF_HUB_CACHE at a cache that holds it',
    });
  }
  const files = (readdirSync(dir, { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[])
    .filter((e) => !e.isDirectory())
    .map((e) => {
      const path = relative(dir, join(e.parentPath, e.name));
      return { path, size: statSync(join(dir, path)).size, downloaded: false };
    });
  return { dir, repo, commit, files, bytesDownloaded: 0 };
}

// Specs resolved in this process: a model named twice (a CLI pre-pull, then the load) asks the hub once.
const resolved = new Map<string, string>();

/** A model argument as a local folder: `hf:org/name[@revision]` is pulled (or found in the cache) first. */
export async function resolveHubModel(spec: string, opts: Omit<PullOptions, 'type'> = {}): Promise<string> {
  const settings = opts.settings ?? hubSettings();
  const key = JSON.stringify([spec, settings.endpoint, settings.cacheDir]);
  const known = resolved.get(key);
  if (known && existsSync(known)) return known;
  const { dir } = await pull(spec, { ...opts, settings, type: 'model' });
  resolved.set(key, dir);
  return dir;
}
