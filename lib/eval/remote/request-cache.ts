import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { sha256 } from '../results.js';

/** LLMBOX_CACHE_DIR/requests, else ~/.cache/llmbox/requests. */
export function defaultRequestCacheDir(): string {
  return join(process.env.LLMBOX_CACHE_DIR ?? join(homedir(), '.cache', 'llmbox'), 'requests');
}

/**
 * Responses of remote requests on disk, keyed by (servers, endpoint, request body): a rerun or a
 * resumed run sends nothing it has sent before. One append-only JSON-lines file per model; a line
 * cut short by a crash is skipped when read. Request bodies hold no secrets (keys travel in
 * headers), so neither do the keys or the file.
 */
export class RequestCache {
  private readonly file: string;
  private entries: Map<string, unknown> | undefined;

  constructor(dir: string, scope: string) {
    mkdirSync(dir, { recursive: true });
    this.file = join(dir, `${sha256(scope).slice(0, 24)}.jsonl`);
  }

  static key(parts: unknown): string {
    return sha256(JSON.stringify(parts));
  }

  private load(): Map<string, unknown> {
    if (this.entries) return this.entries;
    this.entries = new Map();
    if (existsSync(this.file)) {
      for (const line of readFileSync(this.file, 'utf8').split('\n')) {
        if (!line) continue;
        try {
          const { k, v } = JSON.parse(line) as { k: string; v: unknown };
          this.entries.set(k, v);
        } catch {
          // The last line of a killed run may be cut short; its request is simply sent again.
        }
      }
    }
    return this.entries;
  }

  get<T>(key: string): T | undefined {
    return this.load().get(key) as T | undefined;
  }

  put(key: string, value: unknown): void {
    this.load().set(key, value);
    appendFileSync(this.file, JSON.stringify({ k: key, v: value }) + '\n');
  }
}
