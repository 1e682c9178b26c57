// Needs ../shared/data (the benchmark and training data sets): scripts/test.mjs skips this file without it.
// Slow suite (server processes and whole benchmark runs through HTTP): npm run test:fast leaves it out.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LlmboxError } from '../lib/errors.js';
import { evaluate, type EvalRun } from '../lib/eval/evaluate.js';
import { LocalLM } from '../lib/eval/local.js';
import { remoteModel } from '../lib/eval/remote/index.js';
import { TASKS } from '../lib/eval/tasks/index.js';
import { loadModel, type LoadedModel } from '../lib/models/load.js';
import { serve, type RunningServer } from '../lib/serve/server.js';
import { faultyProxy, listen, readBody, runCli } from './helpers/http.js';
import { SHARED_DATA, STORIES, tmp } from './helpers/models.js';

const BIN = fileURLToPath(new URL('../bin/llmbox.js', import.meta.url));

/** Every metric identical, and every instance's option log-likelihoods within 1e-5 (relative). */
function expectSameRun(got: EvalRun, want: EvalRun): void {
  got.results.forEach((r, t) => {
    const w = want.results[t];
    expect(Object.fromEntries(Object.entries(r.metrics).map(([k, v]) => [k, v.value]))).toEqual(
      Object.fromEntries(Object.entries(w.metrics).map(([k, v]) => [k, v.value])),
    );
    r.samples.forEach((s, i) => {
      const a = s.filtered_resps as [number, boolean][],
        b = w.samples[i].filtered_resps as [number, boolean][];
      if (r.method === 'gen') return expect(s.resps).toEqual(w.samples[i].resps);
      a.forEach(([ll, greedy], j) => {
        expect(Math.abs(ll - b[j][0])).toBeLessThan(1e-5 * Math.max(1, Math.abs(b[j][0])));
        expect(greedy).toBe(b[j][1]);
      });
    });
  });
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((f) =>
    statSync(join(dir, f)).isDirectory() ? filesUnder(join(dir, f)) : [join(dir, f)],
  );
}

describe('remote models through llmbox serve (OpenAI-compatible)', () => {
  let lm: LoadedModel;
  let server: RunningServer;
  let local: EvalRun;
  beforeAll(async () => {
    lm = await loadModel(STORIES);
    server = await serve(lm, { port: 0 });
    local = await evaluate(new LocalLM(lm), ['hellaswag', 'arc_easy'], { limit: 100 });
  });
  afterAll(() => server?.close());

  it('hellaswag and ARC (with its content-free calibration) score exactly as in-process', async () => {
    const remote = remoteModel(`${server.url}::stories260K`, { requestCache: false, concurrency: 8 });
    const run = await evaluate(remote, ['hellaswag', 'arc_easy'], { limit: 100 });
    expectSameRun(run, local);
    expect(run.fingerprint.lm).toMatchObject({
      backend: 'openai-compatible',
      endpoint: 'completions',
      servers: [server.url],
      model_type: 'base',
    });
    expect(remote.stats.requests).toBe(
      run.results.reduce((a, r) => a + r.samples.reduce((b, s) => b + Object.keys(s.arguments).length, 0), 0),
    );
  });

  it('generation and rolling log-likelihood match in-process (8-shot prompts cut to the window as locally)', async () => {
    const remote = remoteModel(`${server.url}::stories260K`, { requestCache: false });
    const opts = { limit: 3, maxNewTokens: 24 };
    expectSameRun(await evaluate(remote, ['gsm8k'], opts), await evaluate(new LocalLM(lm), ['gsm8k'], opts));
    const texts = ['Lily and Ben played in the park. They were happy.', 'Once upon a time, there was a dog.'];
    const [a, b] = [await remote.loglikelihoodRolling(texts), await new LocalLM(lm).loglikelihoodRolling(texts)];
    a.forEach((x, i) => expect(Math.abs(x - b[i])).toBeLessThan(1e-5 * Math.abs(b[i])));
  });

  it('429s and 500s are retried (Retry-After honoured): same scores, one retry per fault', async () => {
    const proxy = await faultyProxy(server.url.replace(/\/v1$/, ''), (n) =>
      n % 10 === 3 ? 429 : n % 10 === 7 ? 500 : null,
    );
    try {
      const remote = remoteModel(`${proxy.url}/v1::stories260K`, { requestCache: false, concurrency: 8 });
      const run = await evaluate(remote, ['hellaswag'], { limit: 30 });
      const subset = await evaluate(new LocalLM(lm), ['hellaswag'], { limit: 30 });
      expectSameRun(run, subset);
      expect(proxy.counts.faults).toBeGreaterThan(10);
      expect(remote.stats.retries).toBe(proxy.counts.faults);
      expect(remote.stats.attempts).toBe(proxy.counts.requests);
    } finally {
      await proxy.close();
    }
  });

  it('a server that refuses max_tokens 0 with echo (as vLLM does) gets max_tokens 1, learned from one request', async () => {
    const proxy = await faultyProxy(server.url.replace(/\/v1$/, ''), (_, body) =>
      body.includes('"max_tokens":0') ? { status: 400, message: 'max_tokens must be at least 1, got 0.' } : null,
    );
    try {
      const remote = remoteModel(`${proxy.url}/v1::stories260K`, { requestCache: false, concurrency: 8 });
      const run = await evaluate(remote, ['hellaswag'], { limit: 10 });
      expectSameRun(run, await evaluate(new LocalLM(lm), ['hellaswag'], { limit: 10 }));
      expect(proxy.counts.faults).toBe(1);
    } finally {
      await proxy.close();
    }
  });

  it('a server that keeps failing ends the run with an error naming it and the status', async () => {
    const proxy = await faultyProxy(server.url.replace(/\/v1$/, ''), () => 503);
    try {
      const remote = remoteModel(`${proxy.url}/v1::stories260K`, {
        requestCache: false,
        maxRetries: 2,
        concurrency: 1,
      });
      const err = await evaluate(remote, ['hellaswag'], { limit: 1 }).catch((e) => e);
      expect(err.message).toMatch(new RegExp(`server ${proxy.url}/v1 answered 503: injected 503 \\(after retries\\)`));
      // The first request is tried three times; the queued ones are then not sent at all.
      await new Promise((r) => setTimeout(r, 100));
      expect(proxy.counts.requests).toBe(3);
    } finally {
      await proxy.close();
    }
  });

  it('an interrupted run resumes without sending a request twice; a rerun sends none', async () => {
    const out = tmp(),
      cache = tmp();
    let failing = true;
    // After 40 answered requests the server starts refusing (a 400 is not retried): the run stops.
    const proxy = await faultyProxy(server.url.replace(/\/v1$/, ''), (n, body) =>
      failing && n >= 40 && body.includes('echo') ? 400 : null,
    );
    try {
      const spec = `${proxy.url}/v1::stories260K`;
      const opts = { limit: 25, outputDir: out, chunkSize: 5 };
      const first = remoteModel(spec, { requestCache: cache, concurrency: 2 });
      expect(await evaluate(first, ['hellaswag'], opts).catch((e) => e)).toBeInstanceOf(LlmboxError);
      await new Promise((r) => setTimeout(r, 200));
      const answered = proxy.counts.ok;
      failing = false;
      const before = proxy.counts.requests;
      const second = remoteModel(spec, { requestCache: cache, concurrency: 2 });
      const run = await evaluate(second, ['hellaswag'], opts);
      expectSameRun(run, await evaluate(new LocalLM(lm), ['hellaswag'], { limit: 25 }));
      // Finished chunks come from the resume state, the rest of the answered requests from the cache.
      expect(run.results[0].resumed).toBeGreaterThan(0);
      expect(proxy.counts.requests - before).toBe(100 - answered);
      expect(second.stats.cached).toBe(second.stats.requests - (100 - answered));
      const third = remoteModel(spec, { requestCache: cache });
      await evaluate(third, ['hellaswag'], { limit: 25 });
      expect(third.stats.attempts).toBe(0);
      expect(third.stats.cached).toBe(100);
    } finally {
      await proxy.close();
    }
  });

  it('spreads requests over several servers and scores the same', async () => {
    const second = await serve(lm, { port: 0 });
    try {
      const a0 = server.engine.stats.requests,
        b0 = second.engine.stats.requests;
      const remote = remoteModel(`${server.url}::stories260K,${second.url}::stories260K`, {
        requestCache: false,
        concurrency: 8,
      });
      const run = await evaluate(remote, ['hellaswag'], { limit: 20 });
      expectSameRun(run, await evaluate(new LocalLM(lm), ['hellaswag'], { limit: 20 }));
      const [a, b] = [server.engine.stats.requests - a0, second.engine.stats.requests - b0];
      expect(a + b).toBe(80);
      expect(Math.min(a, b)).toBeGreaterThan(20);
      expect(run.fingerprint.lm.servers).toEqual([server.url, second.url]);
    } finally {
      await second.close();
    }
  });

  it('the chat endpoint generates; log-likelihood tasks are refused before any request', async () => {
    const chat = remoteModel(`${server.url}::stories260K`, {
      endpoint: 'chat',
      requestCache: false,
      systemPrompt: 'You are a tutor.',
    });
    const err = await evaluate(chat, ['hellaswag'], { limit: 2 }).catch((e) => e);
    expect(err.message).toMatch(
      /cannot run hellaswag with method ppl: chat endpoints return no prompt log-probabilities/,
    );
    expect(chat.stats.requests).toBe(0);
    const run = await evaluate(chat, ['gsm8k'], { limit: 2, shots: 0, maxNewTokens: 8 });
    expect(run.results[0].n).toBe(2);
    expect(run.fingerprint.lm).toMatchObject({
      endpoint: 'chat',
      model_type: 'chat',
      system_prompt: 'You are a tutor.',
    });
  });

  it('CLI: `llmbox eval -m http://127.0.0.1:P/v1::stories260K -d hellaswag` prints the in-process scores; the API key appears nowhere', async () => {
    const key = `sk-llmbox-test-${Math.random().toString(36).slice(2)}`;
    const guarded = await serve(lm, { port: 0, apiKey: key });
    try {
      const out = tmp(),
        cache = tmp();
      const env = { LLMBOX_TEST_API_KEY: key, LLMBOX_CACHE_DIR: cache };
      const args = ['eval', '-m', `${guarded.url}::stories260K`, '-d', 'hellaswag', '--limit', '40', '--json'];
      const remote = await runCli(BIN, [...args, '--api-key-env', 'LLMBOX_TEST_API_KEY', '--output', out], env);
      expect(remote.code, remote.stderr).toBe(0);
      const inProcess = await runCli(BIN, ['eval', '-m', STORIES, '-d', 'hellaswag', '--limit', '40', '--json']);
      expect(JSON.parse(remote.stdout).results).toEqual(JSON.parse(inProcess.stdout).results);
      expect(JSON.parse(remote.stdout).requests).toMatchObject({ requests: 160, cached: 0, retries: 0 });
      const written = [...filesUnder(out), ...filesUnder(cache)];
      expect(written.length).toBeGreaterThan(2);
      for (const f of written) expect(readFileSync(f, 'utf8').includes(key), f).toBe(false);
      expect(remote.stdout.includes(key) || remote.stderr.includes(key)).toBe(false);
      // Without the key, or with the variable unset: exit 2, the message names the flag.
      const denied = await runCli(BIN, [...args, '--no-request-cache'], env);
      expect(denied.code).toBe(2);
      expect(denied.stderr).toMatch(/answered 401/);
      const unset = await runCli(BIN, [...args, '--api-key-env', 'LLMBOX_NO_SUCH_VAR'], env);
      expect(unset.code).toBe(2);
      expect(unset.stderr).toMatch(/LLMBOX_NO_SUCH_VAR is not set/);
    } finally {
      await guarded.close();
    }
  });
});

describe('several llmbox serve processes', () => {
  it('llmbox eval spreads a sharded run over two server processes; the merged shards give the in-process scores', async () => {
    const servers = [0, 1].map(() =>
      spawn(process.execPath, [BIN, 'serve', '-m', STORIES, '--port', '0', '--quiet'], {
        env: { ...process.env, LLMBOX_QUIET: '1' },
      }),
    );
    try {
      // Each prints "llmbox serve: stories260K at http://127.0.0.1:PORT/v1" once it listens.
      const urls = await Promise.all(
        servers.map(
          (p) =>
            new Promise<string>((resolve, reject) => {
              let err = '';
              p.stderr.on('data', (d) => {
                err += d;
                const m = /at (http:\/\/127\.0\.0\.1:\d+\/v1)/.exec(err);
                if (m) resolve(m[1]);
              });
              p.on('exit', (code) => reject(new Error(`llmbox serve exited with ${code}: ${err}`)));
            }),
        ),
      );
      const spec = urls.map((u) => `${u}::stories260K`).join(',');
      const dirs = [tmp(), tmp()];
      const runs = await Promise.all(
        dirs.map((dir, i) =>
          runCli(BIN, [
            'eval',
            '-m',
            spec,
            '-d',
            'hellaswag',
            '--limit',
            '30',
            '--shard',
            `${i}/2`,
            '--output',
            dir,
            '--no-request-cache',
            '--json',
          ]),
        ),
      );
      for (const r of runs) expect(r.code, r.stderr).toBe(0);
      const merged = await runCli(BIN, ['merge', ...dirs, '--output', tmp(), '--json']);
      expect(merged.code, merged.stderr).toBe(0);
      const local = await runCli(BIN, ['eval', '-m', STORIES, '-d', 'hellaswag', '--limit', '30', '--json']);
      expect(JSON.parse(merged.stdout).results).toEqual(JSON.parse(local.stdout).results);
      expect(JSON.parse(runs[0].stdout).requests.requests).toBe(15 * 4);
    } finally {
      for (const p of servers) p.kill('SIGTERM');
    }
  });
});

describe('option probability on a chat endpoint (a mock server on loopback)', () => {
  it("scores MMLU letters from the reply's first-token top_logprobs, one request per question; ppl tasks are refused", async () => {
    const gold = new Map(
      TASKS.mmlu_anatomy
        .loadSplit(`${SHARED_DATA}/mmlu`, 'eval')
        .slice(0, 4)
        .map((d) => [d.question!, 'ABCD'[d.gold!]]),
    );
    const bodies: { messages: { role: string; content: string }[]; top_logprobs: number; max_tokens: number }[] = [];
    let drop = '';
    const mock = await listen(async (req, res) => {
      const body = JSON.parse(await readBody(req));
      bodies.push(body);
      const last = body.messages.at(-1).content as string;
      const answer = [...gold.entries()].find(([q]) => last.startsWith(q))![1];
      // The gold letter first, the others below it; " A" and "A" both count for A.
      const top = [
        { token: answer, logprob: -0.3 },
        ...'ABCD'
          .split('')
          .filter((l) => l !== answer && l !== drop)
          .map((l, k) => ({ token: ` ${l}`, logprob: -2 - k })),
        { token: ` ${answer}`, logprob: -3 },
      ];
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          id: 'c',
          object: 'chat.completion',
          created: 0,
          model: body.model,
          choices: [
            {
              index: 0,
              message: { role: 'assistant', content: answer },
              logprobs: { content: [{ token: answer, logprob: -0.3, top_logprobs: top }] },
              finish_reason: 'length',
            },
          ],
        }),
      );
    });
    try {
      const chat = remoteModel(`${mock.url}/v1::tiny-chat`, { endpoint: 'chat', requestCache: false });
      const run = await evaluate(chat, ['mmlu_anatomy'], { limit: 4 });
      expect(run.results[0].method).toBe('prob');
      expect(run.results[0].metrics.acc.value).toBe(1);
      expect(bodies).toHaveLength(4);
      expect(bodies[0]).toMatchObject({ top_logprobs: 20, max_tokens: 1 });
      // Five dev examples as turns after the subject header.
      expect(bodies[0].messages.map((m) => m.role)).toEqual([
        'system',
        ...Array(5).fill(['user', 'assistant']).flat(),
        'user',
      ]);
      const lp = (run.results[0].samples[0].filtered_resps as [number, boolean][]).map(([x]) => x);
      const g = 'ABCD'.indexOf(gold.values().next().value!);
      expect(lp[g]).toBeCloseTo(Math.log(Math.exp(-0.3) + Math.exp(-3)), 12);
      expect((await evaluate(chat, ['hellaswag'], { limit: 1 }).catch((e) => e)).message).toMatch(
        /cannot run hellaswag with method ppl/,
      );
      drop = 'D';
      const missing = await evaluate(
        remoteModel(`${mock.url}/v1::tiny-chat`, { endpoint: 'chat', requestCache: false }),
        ['mmlu_anatomy'],
        { limit: 4 },
      ).catch((e) => e);
      expect(missing.message).toMatch(/option "D" is not among the top \d+ first tokens/);
    } finally {
      await mock.close();
    }
  });
});

describe('Anthropic Messages API (a mock on loopback)', () => {
  it('generates through messages.create with the key from the environment; log-likelihood tasks are refused', async () => {
    const seen: { key: string | undefined; body: Record<string, unknown> }[] = [];
    const mock = await listen(async (req, res) => {
      const body = JSON.parse(await readBody(req));
      // The SDK sends the key as x-api-key or as a bearer token, depending on its version.
      seen.push({
        key: (req.headers['x-api-key'] as string | undefined) ?? req.headers.authorization?.replace(/^Bearer /, ''),
        body,
      });
      const question = String(body.messages[0].content);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          id: 'msg_1',
          type: 'message',
          role: 'assistant',
          model: body.model,
          stop_reason: 'end_turn',
          content: [
            { type: 'text', text: question.includes('Janet') ? 'So #### 18\n\nQuestion: more' : 'I think #### 4' },
          ],
          usage: { input_tokens: 1, output_tokens: 1 },
        }),
      );
    });
    const saved = { ...process.env };
    try {
      process.env.ANTHROPIC_API_KEY = 'sk-ant-test';
      process.env.ANTHROPIC_BASE_URL = mock.url;
      const claude = remoteModel('anthropic:claude-test', { requestCache: false });
      expect((await evaluate(claude, ['arc_easy'], { limit: 1 }).catch((e) => e)).message).toMatch(
        /the Anthropic API returns no log-probabilities/,
      );
      expect(seen).toHaveLength(0);
      const run = await evaluate(claude, ['gsm8k'], { limit: 2, shots: 0 });
      expect(seen).toHaveLength(2);
      expect(seen.map((s) => [s.key, s.body.model])).toEqual([
        ['sk-ant-test', 'claude-test'],
        ['sk-ant-test', 'claude-test'],
      ]);
      // "\n\n" and "Question:" end gsm8k answers: the whitespace-only one is applied here, not sent.
      expect(seen[0].body.stop_sequences).toEqual(['Question:', '</s>', '<|im_end|>']);
      const s = run.results[0].samples;
      expect(s[0].resps).toEqual([['So #### 18']]);
      expect(run.results[0].metrics['exact_match,strict-match'].value).toBe(0.5);
      delete process.env.ANTHROPIC_API_KEY;
      expect(() => remoteModel('anthropic:claude-test')).toThrow(/ANTHROPIC_API_KEY is not set/);
    } finally {
      process.env = saved;
      await mock.close();
    }
  });
});
