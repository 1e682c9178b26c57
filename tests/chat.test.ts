// Needs ../shared/data (the benchmark and training data sets): scripts/test.mjs skips this file without it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChatFormat } from '../lib/eval/chat.js';
import { evaluate } from '../lib/eval/evaluate.js';
import { LocalLM } from '../lib/eval/local.js';
import { remoteModel } from '../lib/eval/remote/index.js';
import { TASKS } from '../lib/eval/tasks/index.js';
import { loadModel, type LoadedModel } from '../lib/models/load.js';
import { TextTokenizer } from '../lib/models/tokenizer.js';
import { serve, type RunningServer } from '../lib/serve/server.js';
import { faultyProxy, listen, readBody } from './helpers/http.js';
import { Conversation, llm } from '../lib/llm.js';
import { SHARED_DATA, STORIES } from './helpers/models.js';

const chatml = (turns: [string, string][]) =>
  turns.map(([role, content]) => `<|im_start|>${role}\n${content}<|im_end|>\n`).join('') + '<|im_start|>assistant\n';

describe('chat models: few-shot examples as turns under a chat template', () => {
  let lm: LoadedModel;
  let server: RunningServer;
  beforeAll(async () => {
    lm = await loadModel(STORIES);
    server = await serve(lm, { port: 0 });
  });
  afterAll(() => server?.close());

  it('scores options as the start of the assistant turn after the examples as turns (ChatML)', async () => {
    const chat = new LocalLM(lm, { modelType: 'chat', chat: { template: 'chatml' } });
    expect(chat.describe()).toMatchObject({ model_type: 'chat', chat_template: 'chatml' });
    const run = await evaluate(chat, ['arc_easy'], { limit: 3, shots: 2, seed: 5 });
    const base = new LocalLM(lm);
    for (const s of run.results[0].samples) {
      const args = Object.values(s.arguments) as { arg_0: string; arg_1: string }[];
      // The base-model prompt of the same instance has the two examples as "Question: ... Answer: ..." blocks.
      const blocks = args[0].arg_0.split('\n\n');
      expect(blocks).toHaveLength(3);
      const turns = blocks.slice(0, 2).flatMap((b): [string, string][] => {
        const at = b.lastIndexOf('Answer:') + 'Answer:'.length;
        return [
          ['user', b.slice(0, at)],
          ['assistant', b.slice(at + 1)],
        ];
      });
      const n = s.doc.choices!.length;
      const want = await base.loglikelihood(
        args
          .slice(0, n)
          .map((a) => ({ context: chatml([...turns, ['user', blocks[2]]]), continuation: a.arg_1.trimStart() })),
      );
      (s.filtered_resps as [number, boolean][])
        .slice(0, n)
        .forEach(([ll], j) => expect(Math.abs(ll - want[j].logprob)).toBeLessThan(1e-5 * Math.abs(want[j].logprob)));
    }
  });

  it('a chat server gets the examples as turns and replies as local chat-mode generation does', async () => {
    const bodies: string[] = [];
    const proxy = await faultyProxy(server.url.replace(/\/v1$/, ''), (_, body) => (bodies.push(body), null));
    try {
      const opts = { limit: 2, shots: 2, maxNewTokens: 16 };
      const remote = remoteModel(`${proxy.url}/v1::stories260K`, {
        modelType: 'chat',
        requestCache: false,
        systemPrompt: 'Solve it.',
      });
      const got = await evaluate(remote, ['gsm8k'], opts);
      const want = await evaluate(
        new LocalLM(lm, { modelType: 'chat', chat: { template: 'chatml', systemPrompt: 'Solve it.' } }),
        ['gsm8k'],
        opts,
      );
      expect(got.results[0].samples.map((s) => s.resps)).toEqual(want.results[0].samples.map((s) => s.resps));
      const sent = JSON.parse(bodies.find((b) => b.includes('messages'))!) as {
        messages: { role: string; content: string }[];
      };
      expect(sent.messages.map((m) => m.role)).toEqual(['system', 'user', 'assistant', 'user', 'assistant', 'user']);
      expect(sent.messages[0].content).toBe('Solve it.');
      expect(sent.messages[2].content).toMatch(/#### \d+$/);
    } finally {
      await proxy.close();
    }
  });

  it('the system prompt joins the task description; a template that writes BOS gets exactly one', async () => {
    const tok = lm.tokenizer!;
    const mmlu = await evaluate(
      new LocalLM(lm, { modelType: 'chat', chat: { systemPrompt: 'Be brief.' } }),
      ['mmlu_anatomy'],
      { limit: 1, shots: 1 },
    );
    expect(mmlu.fingerprint.lm).toMatchObject({
      model_type: 'chat',
      chat_template: 'chatml',
      system_prompt: 'Be brief.',
    });
    const description = TASKS.mmlu_anatomy.description!(
      TASKS.mmlu_anatomy.loadSplit(`${SHARED_DATA}/mmlu`, 'eval')[0],
    ).trim();
    const fmt = new ChatFormat(tok, { systemPrompt: 'Be brief.' });
    expect(
      fmt.render([
        { role: 'system', content: description },
        { role: 'user', content: 'Q' },
      ]).text,
    ).toBe(
      chatml([
        ['system', `Be brief.\n\n${description}`],
        ['user', 'Q'],
      ]),
    );
    // A Llama-2-style Jinja template that starts with bos_token.
    const jinja =
      "{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}[INST] {{ m.content }} [/INST]{% else %} {{ m.content }}{{ eos_token }}{% endif %}{% endfor %}";
    const withTemplate = new TextTokenizer(JSON.parse(JSON.stringify((tok as unknown as { json: object }).json)), {
      ...tok.config,
      chat_template: jinja,
    });
    const llama = new ChatFormat(withTemplate);
    expect(llama.writesBos).toBe(true);
    expect(llama.templateId).toMatch(/^jinja:[0-9a-f]{16}$/);
    expect(llama.render([{ role: 'user', content: 'Hi' }]).text).toBe('[INST] Hi [/INST]');
    // Auto: a tokenizer with a template makes a chat model; its prompts start with one BOS token.
    const auto = new LocalLM({ ...lm, tokenizer: withTemplate });
    expect(auto.describe().model_type).toBe('chat');
    const [a] = await auto.loglikelihood([
      { context: 'x', continuation: ' there', messages: [{ role: 'user', content: 'Hi' }] },
    ]);
    const [b] = await new LocalLM(lm).loglikelihood([{ context: '[INST] Hi [/INST]', continuation: 'there' }]);
    expect(Math.abs(a.logprob - b.logprob)).toBeLessThan(1e-6);
    await expect(auto.loglikelihood([{ context: 'x', continuation: 'y' }])).rejects.toThrow(
      /needs the request as chat turns/,
    );
  });

  it('llm.chat streams the reply: deltas add up to it, locally and through a server, and both agree', async () => {
    const deltas: string[] = [];
    const local = await llm.load(lm).chat('Tell me about a dog.', { maxNewTokens: 20, onText: (t) => deltas.push(t) });
    expect(local).toBeInstanceOf(Conversation);
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.join('')).toBe(local.reply);
    expect(local.messages.map((m) => m.role)).toEqual(['user', 'assistant']);
    const remoteDeltas: string[] = [];
    const remote = await llm
      .load(`${server.url}::stories260K`, { requestCache: false })
      .chat('Tell me about a dog.', { maxNewTokens: 20, onText: (t) => remoteDeltas.push(t) });
    expect(remote.reply).toBe(local.reply);
    expect(remoteDeltas.length).toBeGreaterThan(1);
    expect(remoteDeltas.join('')).toBe(remote.reply);
    expect(remote.finishReason).toBe(local.finishReason);
  });

  it('Anthropic: chat turns go to messages and system; a streamed reply arrives as text deltas', async () => {
    const bodies: Record<string, unknown>[] = [];
    const mock = await listen(async (req, res) => {
      const body = JSON.parse(await readBody(req));
      bodies.push(body);
      const send = (event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      send('message_start', {
        type: 'message_start',
        message: {
          id: 'm',
          type: 'message',
          role: 'assistant',
          model: body.model,
          content: [],
          stop_reason: null,
          usage: { input_tokens: 1, output_tokens: 0 },
        },
      });
      send('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } });
      for (const text of ['Hello', ', ', 'friend.'])
        send('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } });
      send('content_block_stop', { type: 'content_block_stop', index: 0 });
      send('message_delta', {
        type: 'message_delta',
        delta: { stop_reason: 'max_tokens' },
        usage: { output_tokens: 3 },
      });
      send('message_stop', { type: 'message_stop' });
      res.end();
    });
    const saved = { ...process.env };
    try {
      Object.assign(process.env, { ANTHROPIC_API_KEY: 'sk-ant-test', ANTHROPIC_BASE_URL: mock.url });
      const deltas: string[] = [];
      const c = await llm.load('anthropic:claude-test', { requestCache: false, systemPrompt: 'Be kind.' }).chat(
        [
          { role: 'user', content: 'Hi' },
          { role: 'assistant', content: 'Hello.' },
          { role: 'user', content: 'Again?' },
        ],
        { onText: (t) => deltas.push(t) },
      );
      expect(deltas).toEqual(['Hello', ', ', 'friend.']);
      expect(c.reply).toBe('Hello, friend.');
      expect(c.finishReason).toBe('length');
      expect(bodies[0]).toMatchObject({
        system: 'Be kind.',
        stream: true,
        messages: [
          { role: 'user', content: 'Hi' },
          { role: 'assistant', content: 'Hello.' },
          { role: 'user', content: 'Again?' },
        ],
      });
    } finally {
      process.env = saved;
      await mock.close();
    }
  });
});
