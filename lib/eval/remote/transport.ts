/**
 * What every remote backend shares: a bound on requests in flight, the choice of server (least
 * outstanding requests), the persistent response cache, and counts of what was sent.
 */
import { LlmboxError } from '../../errors.js';
import { RequestCache } from './request-cache.js';

export interface RemoteOptions {
  /** Requests in flight at once, over all servers (default 4). */
  concurrency?: number;
  /** Retries per request on 408/409/429/5xx and connection errors, with exponential backoff and jitter; Retry-After honoured (default 5). */
  maxRetries?: number;
  /** Seconds before one attempt is abandoned (default 300). */
  timeoutSeconds?: number;
  /** Folder of the response cache; false turns it off. */
  requestCache?: string | false;
  /** Environment variable holding the API key (defaults per provider). */
  apiKeyEnv?: string;
}

export interface RequestStats {
  /** Requests asked for by evaluation. */
  requests: number;
  /** Answered from the response cache, never sent. */
  cached: number;
  /** HTTP attempts made (first tries and retries). */
  attempts: number;
  /** Attempts beyond the first try of each request sent. */
  retries: number;
}

export class Transport<Client> {
  private readonly counts = { requests: 0, cached: 0, attempts: 0 };
  private readonly outstanding: number[];
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly cache: RequestCache | undefined;
  private next = 0;
  /** A request that failed for good: the ones still queued behind it are not sent. */
  private failure: unknown;

  constructor(
    private readonly clients: Client[],
    readonly servers: string[],
    scope: string,
    private readonly concurrency: number,
    cacheDir: string | false,
  ) {
    this.outstanding = clients.map(() => 0);
    this.cache = cacheDir === false ? undefined : new RequestCache(cacheDir, scope);
  }

  get stats(): RequestStats {
    const c = this.counts;
    return { ...c, retries: Math.max(0, c.attempts - (c.requests - c.cached)) };
  }

  /** A fetch that counts attempts, for the SDK clients (which retry inside one call). */
  countingFetch(): typeof fetch {
    return (input, init) => {
      this.counts.attempts++;
      return fetch(input, init);
    };
  }

  /**
   * Sends one request through the least busy server, or answers it from the cache. `key` names
   * the request (endpoint and body); `send` returns what is worth caching.
   */
  async request<T>(key: unknown, send: (client: Client, server: string) => Promise<T>): Promise<T> {
    this.counts.requests++;
    const k = RequestCache.key([this.servers, key]);
    const hit = this.cache?.get<T>(k);
    if (hit !== undefined) {
      this.counts.cached++;
      return hit;
    }
    await this.acquire();
    if (this.failure !== undefined) {
      this.release();
      throw this.failure;
    }
    const i = this.pick();
    this.outstanding[i]++;
    try {
      const value = await send(this.clients[i], this.servers[i]);
      this.cache?.put(k, value);
      return value;
    } catch (e) {
      this.failure ??= e;
      throw e;
    } finally {
      this.outstanding[i]--;
      this.release();
    }
  }

  /** The server with the fewest requests in flight; ties go round-robin. */
  private pick(): number {
    const n = this.clients.length;
    let best = this.next % n;
    for (let j = 1; j < n; j++) {
      const i = (this.next + j) % n;
      if (this.outstanding[i] < this.outstanding[best]) best = i;
    }
    this.next = best + 1;
    return best;
  }

  private acquire(): Promise<void> {
    if (this.active < this.concurrency) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    const wake = this.waiting.shift();
    if (wake) wake();
    else this.active--;
    // Once the failed batch has drained, later calls (a retry by the user) start afresh.
    if (this.active === 0) this.failure = undefined;
  }
}

/** The text before the first stop string. */
export function cutAtStops(text: string, stops: string[]): string {
  const at = Math.min(
    ...stops
      .filter((s) => s.length > 0)
      .map((s) => text.indexOf(s))
      .filter((i) => i >= 0),
  );
  return Number.isFinite(at) ? text.slice(0, at) : text;
}

/**
 * Runs one SDK call; its failure, after the SDK's retries, becomes an error naming the server and
 * the status: the user's to fix for 4xx (exit 2), the server's otherwise.
 */
export async function call<T>(server: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    // Both official SDKs throw errors with a numeric status for HTTP answers, and a status-less
    // APIConnectionError (or its timeout subclass) when no answer came.
    const status = (e as { status?: unknown }).status;
    if (typeof status !== 'number' && e instanceof Error && /Connection/.test(e.constructor.name)) {
      throw new Error(
        `server ${server}: ${e.constructor.name === 'APIConnectionTimeoutError' ? 'timed out' : 'cannot connect'} (${(e.cause as Error | undefined)?.message ?? e.message}); gave up after retries`,
      );
    }
    if (typeof status === 'number') {
      const msg = `server ${server} answered ${status}: ${(e as Error).message.replace(/^\d+\s*/, '')}`;
      if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
        throw new LlmboxError(msg, {
          field: status === 401 || status === 403 ? '--api-key-env' : '--model',
          fix:
            status === 401 || status === 403
              ? 'set the API key in the environment variable --api-key-env names'
              : 'check the model id and the request the server refused',
        });
      }
      throw new Error(`${msg} (after retries)`);
    }
    throw e;
  }
}
