import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * The Hugging Face Hub settings, read from the environment as huggingface_hub reads them, so a
 * machine set up for Python (a mirror, a token, a cache on a big disk) works the same here.
 */
export interface HubSettings {
  /** HF_ENDPOINT: the hub or a mirror. */
  endpoint: string;
  /** HF_TOKEN (else the token file `huggingface-cli login` writes); never logged. */
  token: string | undefined;
  /** HF_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub. */
  cacheDir: string;
  /** HF_HUB_OFFLINE=1: only what the cache holds, no request is sent. */
  offline: boolean;
}

const truthy = (v: string | undefined) => v !== undefined && ['1', 'true', 'yes', 'on'].includes(v.toLowerCase());

function hfHome(env: NodeJS.ProcessEnv): string {
  return env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'huggingface');
}

function readToken(env: NodeJS.ProcessEnv): string | undefined {
  const fromEnv = env.HF_TOKEN ?? env.HUGGING_FACE_HUB_TOKEN;
  if (fromEnv?.trim()) return fromEnv.trim();
  const file = env.HF_TOKEN_PATH ?? join(hfHome(env), 'token');
  return existsSync(file) ? readFileSync(file, 'utf8').trim() || undefined : undefined;
}

export function hubSettings(env: NodeJS.ProcessEnv = process.env): HubSettings {
  return {
    endpoint: (env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, ''),
    token: readToken(env),
    cacheDir: env.HF_HUB_CACHE ?? join(hfHome(env), 'hub'),
    offline: truthy(env.HF_HUB_OFFLINE),
  };
}
