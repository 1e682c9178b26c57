// Needs ../shared/data (the benchmark and training data sets): scripts/test.mjs skips this file without it.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { LlmboxError } from '../lib/errors.js';
import { generate } from '../lib/models/generate.js';
import { loadModel } from '../lib/models/load.js';
import { Evaluation, Formatted, Generation, llm, Scores, Training, TrainingComparison } from '../lib/llm.js';
import { toRecord } from '../lib/data/records.js';
import { tokenizeRecord } from '../lib/data/tokenize.js';
import { LocalLM } from '../lib/eval/local.js';
import { SHARED_DATA, STORIES, tmp } from './helpers/models.js';

describe('fluent llm API', () => {
  it('evaluate: an awaited chain gives a typed evaluation with an Arrow table, HTML and a chart', async () => {
    const ev = await llm.load(STORIES).evaluate(['arc_easy', 'hellaswag'], { limit: 6 });
    expect(ev).toBeInstanceOf(Evaluation);
    const rows = ev.table.toArray().map((r) => r.toJSON());
    const acc = rows.find((r) => r.task === 'arc_easy' && r.metric === 'acc')!;
    expect(acc.value).toBe(ev.run.results[0].metrics.acc.value);
    expect(acc.n).toBe(6);
    expect(ev.toHTML()).toMatch(/<table class="llmbox-table">[\s\S]*<td>arc_easy<\/td>[\s\S]*<td>acc<\/td>/);
    expect(ev.toString().split('\n')[0]).toMatch(/^task\s+subset\s+method\s+shots\s+metric\s+value\s+stderr\s+n$/);
    expect(ev.toString()).toMatch(/^arc_easy\s+ppl\s+0\s+acc\s+\d\.\d{4}\s+\d\.\d{4}\s+6$/m);
    const fig = ev.plot();
    expect(fig.data[0]).toMatchObject({ type: 'bar', x: ['arc_easy', 'hellaswag'] });
    expect((fig.data[0].y as number[])[0]).toBe(acc.value);
    const cal = ev.plot('calibration');
    expect(cal.data).toHaveLength(2);
    // One serializer: the JSON is what `llmbox eval --json` prints, standard errors included.
    const json = JSON.parse(JSON.stringify(ev));
    expect(json.results.arc_easy).toMatchObject({
      acc: acc.value,
      acc_stderr: acc.stderr,
      n: 6,
      method: 'ppl',
      shots: 0,
    });
    const df = ev.toDanfo();
    expect(df.columns).toEqual(['task', 'subset', 'method', 'shots', 'metric', 'value', 'stderr', 'n']);
    expect(df.shape).toEqual([ev.table.numRows, 8]);
    expect(df['value'].values).toEqual(rows.map((r) => r.value));
    expect(() => ev.toPolars()).toThrow(/nodejs-polars is not installed/);
  });

  it('generate and score match the underlying functions', async () => {
    const lm = await loadModel(STORIES);
    const gen = await llm.load(lm).generate('Once upon a time', { maxNewTokens: 12 });
    expect(gen).toBeInstanceOf(Generation);
    expect(gen.texts[0]).toBe((await generate(lm, ['Once upon a time'], { maxNewTokens: 12 }))[0].text);
    const sc = await llm.load(lm).score('Tom had a red', [' ball', ' sky', ' dog']);
    expect(sc).toBeInstanceOf(Scores);
    const direct = await new LocalLM(lm).loglikelihood(
      [' ball', ' sky', ' dog'].map((c) => ({ context: 'Tom had a red', continuation: c })),
    );
    sc.options.forEach((o, i) => expect(Math.abs(o.logprob - direct[i].logprob)).toBeLessThan(1e-5));
    expect(sc.options.reduce((a, o) => a + o.probability, 0)).toBeCloseTo(1, 10);
    expect(sc.best).toBe(sc.options.reduce((a, b) => (b.logprob > a.logprob ? b : a)).text);
    expect(sc.table.numRows).toBe(3);
  });

  it('runs the steps in order on one model, and an error names the failing step', async () => {
    const chain = llm.load(STORIES).score('The cat', [' sat']).evaluate('arc_easy', { limit: 2 });
    expect((await chain).run.results[0].n).toBe(2);
    const bad = llm.load(STORIES).generate('Hi', { maxNewTokens: 2 }).evaluate(['no_such_task']);
    const err = await Promise.resolve(bad).catch((e) => e);
    expect(err).toBeInstanceOf(LlmboxError);
    expect(err.message).toMatch(/^evaluate\(no_such_task\): unknown task no_such_task/);
    const missing = await Promise.resolve(llm.load('/nope/model').generate('x')).catch((e) => e);
    expect(missing.message).toMatch(/^load: model folder not found/);
    // The step's name is prefixed once; the file, field and fix lines appear once.
    expect(missing.message.match(/file: /g)).toHaveLength(1);
    expect(missing.message.match(/fix: /g)).toHaveLength(1);
    expect(missing.reason).toBe('load: model folder not found');
  });

  it('saves a figure as a standalone page with plotly.js inlined (no CDN), or as JSON', async () => {
    const ev = await llm.load(STORIES).evaluate('arc_easy', { limit: 3 });
    const dir = tmp();
    const html = readFileSync(await ev.plot().save(`${dir}/scores.html`), 'utf8');
    expect(html).toMatch(/^<!DOCTYPE html>/);
    expect(html).not.toMatch(/<script[^>]+src=/);
    expect(html.length).toBeGreaterThan(1_000_000);
    expect(html).toContain('Plotly.newPlot(');
    expect(JSON.parse(readFileSync(await ev.plot().save(`${dir}/scores.json`), 'utf8')).data[0].type).toBe('bar');
    await expect(ev.plot().save(`${dir}/scores.gif`)).rejects.toThrow(/cannot save a figure as .gif/);
  });

  it('train then evaluate: later steps see the trained weights; the result has a metrics table and charts', async () => {
    const text = `${SHARED_DATA}/pretrain_text/tinyshakespeare.txt`;
    const opts = {
      datasets: [text],
      stage: 'pt' as const,
      maxLength: 128,
      batchSize: 4,
      maxSteps: 6,
      lr: 3e-3,
      valSize: 40,
      evalEvery: 3,
    };
    const before = await llm.load(STORIES).evaluate('tinystories_ppl', { limit: 4 });
    const model = llm.load(STORIES);
    const tr = await model.train(opts);
    expect(tr).toBeInstanceOf(Training);
    expect(tr.table.numRows).toBe(6);
    expect(tr.table.schema.fields.map((f) => f.name)).toEqual([
      'step',
      'loss',
      'lr',
      'grad_norm',
      'tokens',
      'tokens_per_second',
    ]);
    expect(tr.plot().data.map((d) => d.name)).toEqual(['train loss', 'eval loss', 'learning rate']);
    expect(tr.plot('mixture').data[0].y).toEqual([1]);
    expect(tr.toHTML()).toMatch(/^<p>6 steps \(pt\), loss [\d.]+ -&gt; [\d.]+, eval loss/);
    // The chain's model is the trained one: its perplexity on TinyStories moved (toward Shakespeare).
    const after = await model.evaluate('tinystories_ppl', { limit: 4 });
    const bpb = (e: Evaluation) => e.run.results[0].metrics.bits_per_byte.value;
    expect(Math.abs(bpb(after) - bpb(before))).toBeGreaterThan(0.01);
    const chained = await llm.load(STORIES).train(opts).evaluate('tinystories_ppl', { limit: 4 });
    expect(bpb(chained)).toBeCloseTo(bpb(after), 6);
  });

  it('compares training runs: method, model-state bytes from the held tensors, speed, losses; curves on steps or tokens', async () => {
    const common = {
      datasets: [`${SHARED_DATA}/sft_samples/dolly_hhrlhf_train_small.jsonl`],
      stage: 'sft' as const,
      maxLength: 128,
      batchSize: 4,
      maxSteps: 3,
      lr: 2e-3,
      valSize: 8,
      evalEvery: 3,
      seed: 1,
    };
    const lora = { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj'] };
    const full = await llm.load(STORIES).train(common);
    const adapters = await llm.load(STORIES).train({ ...common, lora });
    const q = await llm.load(STORIES).train({ ...common, lora, qlora: true });
    const cmp = llm.compare({ full, lora: adapters, qlora: q });
    expect(cmp).toBeInstanceOf(TrainingComparison);
    const rows = cmp.table.toArray().map((r) => r.toJSON());
    expect(rows.map((r) => [r.run, r.method, r.steps])).toEqual([
      ['full', 'full', 3],
      ['lora', 'lora', 3],
      ['qlora', 'qlora', 3],
    ]);
    const total = full.result.parameters.total,
      MiB = 2 ** 20;
    // Full training: float32 weights, their gradients and AdamW's two moments, 16 bytes a parameter.
    expect(rows[0].trainable_pct).toBe(100);
    expect(rows[0].weights_mib * MiB).toBeCloseTo(4 * total, 3);
    expect(rows[0].state_mib * MiB).toBeCloseTo(16 * total, 3);
    // LoRA: the frozen base, and 16 bytes per adapter parameter (the adapter, its gradient, two moments).
    const r = adapters.result.parameters.trainable;
    expect(r).toBeGreaterThan(0);
    expect(rows[1].trainable_pct).toBeCloseTo((100 * r) / total, 9);
    expect(rows[1].state_mib * MiB).toBeCloseTo(4 * total + 16 * r, 3);
    // QLoRA: the decoder's linear layers held as NF4 (counted from the held codes, checked against the quantizer's report).
    const qz = q.result.quantization!;
    expect(rows[2].weights_mib * MiB).toBeCloseTo(4 * total - qz.float32Bytes + qz.nf4Bytes, 3);
    expect(rows[2].weights_mib).toBeLessThan(rows[1].weights_mib);
    expect(rows[1].eval_loss).toBe(adapters.result.evalLoss);
    expect(rows[2].first_loss).toBe(q.result.losses[0]);
    expect(rows[0].tokens_per_s).toBeGreaterThan(0);
    const fig = cmp.plot('tokens');
    expect(fig.data.map((d) => d.name)).toEqual([
      'full',
      'full (eval)',
      'lora',
      'lora (eval)',
      'qlora',
      'qlora (eval)',
    ]);
    const t = full.result.metrics.map((m) => m.tokens);
    expect(fig.data[0].x).toEqual([t[0], t[0] + t[1], t[0] + t[1] + t[2]]);
    expect(fig.data[1].x).toEqual([0, t[0] + t[1] + t[2]]); // evaluated before the first step and after the last
    expect(fig.data[1].y).toEqual(full.result.evalLosses.map((e) => e.loss));
    expect(cmp.plot().data[0].x).toEqual([1, 2, 3]);
    expect(cmp.toHTML()).toMatch(/<table class="llmbox-table">[\s\S]*<td>qlora<\/td>/);
    const ev = await llm.load(STORIES).evaluate('arc_easy', { limit: 2 });
    expect(() => llm.compare({ full, ev } as unknown as Record<string, Training>)).toThrow(
      /evaluations or training runs/,
    );
  });

  it('format shows the text a training example becomes and the tokens it learns (the loss mask)', async () => {
    const model = llm.load(STORIES);
    const row = { instruction: 'Name a colour.', input: '', output: 'Blue.' };
    const f = await model.format(row, { template: 'alpaca' });
    expect(f).toBeInstanceOf(Formatted);
    expect(f.spans.map((s) => s.learned)).toEqual([false, true]);
    expect(f.spans[1].text).toBe('Blue.</s>'); // the reply and the EOS that ends it
    expect(f.text).toMatch(
      /^<s> Below is an instruction[\s\S]*### Instruction:\nName a colour\.\n\n### Response:\nBlue\.<\/s>$/,
    );
    const { tokenizer } = await loadModel(STORIES);
    const ex = tokenizeRecord(tokenizer!, toRecord(row, { file: 't', row: 1 }), { template: 'alpaca' });
    expect([f.tokens, f.learned]).toEqual([ex.inputIds.length, ex.labelMask.reduce((a, b) => a + b, 0)]);
    expect(f.text).toBe(tokenizer!.decode(ex.inputIds, { skipSpecialTokens: false }));

    const chat = [
      { role: 'user' as const, content: 'Hi' },
      { role: 'assistant' as const, content: 'Hello there.' },
      { role: 'user' as const, content: 'Bye' },
      { role: 'assistant' as const, content: 'Bye now.' },
    ];
    const c = await model.format(chat, { template: 'chatml' });
    expect(c.spans.filter((s) => s.learned).map((s) => s.text)).toEqual([
      'Hello there.<|im_end|>',
      'Bye now.<|im_end|>',
    ]);
    expect(String(c)).toContain('[[Bye now.<|im_end|>]]');
    expect(c.toHTML()).toContain('<span style="background:#c8f0c8">Hello there.&lt;|im_end|&gt;</span>');
    const all = await model.format(chat, { template: 'chatml', trainOnPrompt: true });
    expect(all.learned).toBe(all.tokens - 1); // everything but BOS, which nothing predicts
    const text = await model.format('Once upon a time');
    expect(text.spans).toEqual([
      { text: '<s>', learned: false, tokens: 1 },
      { text: ' Once upon a time</s>', learned: true, tokens: text.tokens - 1 },
    ]);
    const t = llm.table([
      { n: 1, x: 0.5, ok: true, s: 'a' },
      { n: 2, x: 1, ok: null, s: 3 },
    ]);
    expect(t.schema.fields.map((f) => String(f.type))).toEqual(['Int32', 'Float64', 'Bool', 'Utf8']);
    expect(t.toArray().map((r) => r.toJSON())).toEqual([
      { n: 1, x: 0.5, ok: true, s: 'a' },
      { n: 2, x: 1, ok: null, s: '3' },
    ]);
    expect(() => llm.table([])).toThrow(/at least one row/);
  });
});
