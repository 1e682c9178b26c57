// Needs ../shared/data (the benchmark and training data sets): scripts/test.mjs skips this file without it.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { LlmboxError } from '../lib/errors.js';
import { generate } from '../lib/models/generate.js';
import { loadModel } from '../lib/models/load.js';
import { Evaluation, Generation, llm, Scores, Training } from '../lib/llm.js';
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
});
