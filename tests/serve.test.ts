import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../lib/models/generate.js';
import { loadModel, type LoadedModel } from '../lib/models/load.js';
import { nextTokenLogprobs } from '../lib/models/score.js';
import { serve, type RunningServer } from '../lib/serve/server.js';
import { STORIES } from './helpers/models.js';

/** llmbox serve on loopback, driven by the official openai SDK. */
describe('llmbox serve', () => {
  let lm: LoadedModel;
  let server: RunningServer;
  let client: OpenAI;
  beforeAll(async () => {
    lm = await loadModel(STORIES);
    server = await serve(lm, { port: 0, apiKey: 'test-key-123', maxBodyBytes: 64 * 1024 });
    client = new OpenAI({ baseURL: server.url, apiKey: 'test-key-123', maxRetries: 0 });
  });
  afterAll(() => server?.close());

  it('binds to 127.0.0.1 and lists its model with the context window', async () => {
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['stories260K']);
    expect((models.data[0] as unknown as { max_model_len: number }).max_model_len).toBe(512);
  });

  it('echoes the prompt with the teacher-forced log-probabilities and text offsets', async () => {
    const prompt = 'Once upon a time, there was a little girl';
    const r = await client.completions.create({
      model: 'stories260K',
      prompt,
      max_tokens: 0,
      echo: true,
      logprobs: 1,
      temperature: 0,
    });
    const c = r.choices[0];
    expect(c.text).toBe(prompt);
    const ids = lm.tokenizer!.encode(prompt);
    const want = await nextTokenLogprobs(lm.model, ids);
    const lp = c.logprobs!;
    expect(lp.token_logprobs![0]).toBeNull();
    lp.token_logprobs!.slice(1).forEach((x, i) => expect(Math.abs(x! - want[i])).toBeLessThan(1e-5));
    // Offsets index the echoed text: each token's text starts where its offset says.
    lp.tokens!.forEach((t, i) => expect(c.text.slice(lp.text_offset![i], lp.text_offset![i] + t.length)).toBe(t));
    expect(lp.tokens!.join('')).toBe(prompt);
    // The top alternative's log-probability is at least the chosen token's.
    lp.top_logprobs!.slice(1).forEach((top, i) =>
      expect(Math.max(...Object.values(top!))).toBeGreaterThanOrEqual(lp.token_logprobs![i + 1]! - 1e-12),
    );
    expect(r.usage).toEqual({ prompt_tokens: ids.length, completion_tokens: 0, total_tokens: ids.length });
  });

  it('generates what in-process greedy decoding generates, batching requests that arrive together', async () => {
    const prompts = ['Once upon a time', 'Tom had a red ball.', 'The sun was', 'Lily and Ben'];
    const want = (await generate(lm, prompts, { maxNewTokens: 16, stop: ['.'] })).map((g) => g.text);
    // Concurrent requests (how many share a batch depends on when they arrive; the texts may not).
    const got = await Promise.all(
      prompts.map((prompt) =>
        client.completions.create({ model: 'stories260K', prompt, max_tokens: 16, temperature: 0, stop: '.' }),
      ),
    );
    expect(got.map((r) => r.choices[0].text)).toEqual(want);
    // Prompts that arrive together (here: in one request) run as one batch.
    const before = server.engine.stats.batches;
    const together = await client.completions.create({
      model: 'stories260K',
      prompt: prompts,
      max_tokens: 16,
      temperature: 0,
      stop: '.',
    });
    expect(together.choices.map((c) => c.text)).toEqual(want);
    expect(server.engine.stats.batches - before).toBe(1);
    // Several prompts in one request, and the log-probabilities of generated tokens.
    const many = await client.completions.create({
      model: 'stories260K',
      prompt: prompts.slice(0, 2),
      max_tokens: 8,
      temperature: 0,
      logprobs: 2,
    });
    expect(many.choices.map((c) => c.index)).toEqual([0, 1]);
    const g = (await generate(lm, [prompts[0]], { maxNewTokens: 8, logprobs: 2 }))[0];
    // Float32 rounding only: the batch's products have other shapes (1.1e-6 with AVX-512 OpenBLAS).
    many.choices[0].logprobs!.token_logprobs!.forEach((x, i) =>
      expect(Math.abs(x! - g.logprobs![i].logprob)).toBeLessThan(5e-6),
    );
    expect(many.choices[0].logprobs!.tokens!.join('')).toBe(many.choices[0].text);
  });

  it('seeded sampling repeats; n gives several replies', async () => {
    const body = { model: 'stories260K', prompt: 'Once upon a time', max_tokens: 12, temperature: 1, seed: 7, n: 3 };
    const a = await client.completions.create(body);
    const b = await client.completions.create(body);
    expect(a.choices.map((c) => c.text)).toEqual(b.choices.map((c) => c.text));
    expect(a.choices).toHaveLength(3);
    expect(new Set(a.choices.map((c) => c.text)).size).toBeGreaterThan(1);
  });

  it('chat: streamed deltas add up to the non-streamed reply, ending with finish_reason and [DONE]', async () => {
    const messages = [{ role: 'user' as const, content: 'Tell me a story about a cat.' }];
    const whole = await client.chat.completions.create({
      model: 'stories260K',
      messages,
      max_tokens: 24,
      temperature: 0,
    });
    const stream = await client.chat.completions.create({
      model: 'stories260K',
      messages,
      max_tokens: 24,
      temperature: 0,
      stream: true,
    });
    const parts: string[] = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      parts.push(chunk.choices[0].delta.content ?? '');
      finish = chunk.choices[0].finish_reason ?? finish;
    }
    expect(parts.filter(Boolean).length).toBeGreaterThan(1);
    expect(parts.join('')).toBe(whole.choices[0].message.content);
    expect(finish).toBe(whole.choices[0].finish_reason);
    // The default template is ChatML: the prompt opens the assistant turn.
    const ids = lm.tokenizer!.encode(
      '<|im_start|>user\nTell me a story about a cat.<|im_end|>\n<|im_start|>assistant\n',
    );
    expect(whole.usage!.prompt_tokens).toBe(ids.length);
  });

  it('refuses bad requests with 4xx errors that name the parameter', async () => {
    const err = (p: Promise<unknown>) =>
      p.then(
        () => null,
        (e: { status: number; error?: { param?: string; message?: string } }) => e,
      );
    const bad = await err(
      client.completions.create({ model: 'stories260K', prompt: 'x', temperature: 'hot' as unknown as number }),
    );
    expect(bad).toMatchObject({ status: 400, error: { param: 'temperature' } });
    expect(await err(client.completions.create({ model: 'gpt-4', prompt: 'x' }))).toMatchObject({
      status: 404,
      error: { param: 'model' },
    });
    const long = await err(client.completions.create({ model: 'stories260K', prompt: 'x', max_tokens: 600 }));
    expect(long).toMatchObject({ status: 400, error: { param: 'max_tokens' } });
    const window = await err(
      client.completions.create({ model: 'stories260K', prompt: 'word '.repeat(300), max_tokens: 300 }),
    );
    expect(window?.error?.message).toMatch(/maximum context length is 512 tokens/);
    expect(
      await err(client.completions.create({ model: 'stories260K', prompt: 'x', presence_penalty: 1 })),
    ).toMatchObject({ status: 400, error: { param: 'presence_penalty' } });
    expect(await err(client.chat.completions.create({ model: 'stories260K', messages: [] }))).toMatchObject({
      status: 400,
      error: { param: 'messages' },
    });
    expect(await err(client.completions.create({ model: 'stories260K', prompt: 'x'.repeat(70 * 1024) }))).toMatchObject(
      { status: 413 },
    );
    const noKey = new OpenAI({ baseURL: server.url, apiKey: 'wrong', maxRetries: 0 });
    expect(await err(noKey.models.list())).toMatchObject({ status: 401 });
    const raw = await fetch(`${server.url}/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer test-key-123' },
      body: '{"model": ',
    });
    expect(raw.status).toBe(400);
    expect(((await raw.json()) as { error: { message: string } }).error.message).toMatch(/not valid JSON/);
    expect(
      (await fetch(`${server.url}/embeddings`, { headers: { authorization: 'Bearer test-key-123' } })).status,
    ).toBe(404);
  });
});
