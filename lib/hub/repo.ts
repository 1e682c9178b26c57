import { LlmboxError } from '../errors.js';

export type RepoType = 'model' | 'dataset';

/** A repository on the hub at a revision (a branch, a tag or a commit). */
export interface RepoRef {
  type: RepoType;
  /** `org/name`, or `name` for the few top-level repositories (gpt2). */
  id: string;
  revision: string;
}

const ID = /^[\w.-]+(\/[\w.-]+)?$/;

/** Whether a model argument names a hub repository (`hf:org/name[@revision]`) rather than a folder. */
export function isHubSpec(spec: string): boolean {
  return spec.startsWith('hf:');
}

/**
 * `org/name`, `org/name@revision`, `datasets/org/name` (or `type` given), with an optional `hf:`
 * prefix: what `llmbox pull` and `-m hf:...` take.
 */
export function parseRepo(spec: string, type?: RepoType): RepoRef {
  let rest = spec.replace(/^hf:/, '');
  let repoType: RepoType = type ?? 'model';
  if (rest.startsWith('datasets/')) [repoType, rest] = ['dataset', rest.slice('datasets/'.length)];
  else if (rest.startsWith('models/')) rest = rest.slice('models/'.length);
  const at = rest.indexOf('@');
  const id = at < 0 ? rest : rest.slice(0, at);
  const revision = at < 0 ? 'main' : rest.slice(at + 1);
  if (!ID.test(id) || !revision || id.split('/').some((p) => p === '.' || p === '..')) {
    throw new LlmboxError(`not a hub repository: ${spec}`, {
      field: 'repository',
      fix: 'write org/name, org/name@revision or datasets/org/name (with hf: in front where a model folder is expected)',
    });
  }
  return { type: repoType, id, revision };
}

/** The repository's folder in the cache, named as huggingface_hub names it (models--org--name). */
export function cacheFolderName(ref: RepoRef): string {
  return `${ref.type}s--${ref.id.replace(/\//g, '--')}`;
}

/** The hub's URL path of the repository: `org/name` for models, `datasets/org/name` for data sets. */
export function repoUrlPath(ref: RepoRef): string {
  return ref.type === 'dataset' ? `datasets/${ref.id}` : ref.id;
}

export function describeRepo(ref: RepoRef): string {
  return `${ref.type === 'dataset' ? 'datasets/' : ''}${ref.id}@${ref.revision}`;
}
