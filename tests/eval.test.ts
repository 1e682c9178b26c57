// Needs ../shared/data (the benchmark and training data sets): scripts/test.mjs skips this file without it.
import * as tf from '@tensorflow/tfjs';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { evaluateTask } from '../lib/eval/evaluate.js';
import { encodePair } from '../lib/eval/lm.js';
import { LocalLM } from '../lib/eval/local.js';
import { fewshotPrefix } from '../lib/eval/methods/prompt.js';
import { TASKS } from '../lib/eval/tasks/index.js';
import { preprocessHellaswag } from '../lib/eval/tasks/hellaswag.js';
import { loadModel, type LoadedModel } from '../lib/models/load.js';
import { nextTokenLogprobs } from '../lib/models/score.js';
import { SHARED_DATA, STORIES, llmboxErrorOf, tmp } from './helpers/models.js';

const DATA = SHARED_DATA;
const ref = JSON.parse(readFileSync(`${STORIES}/REFERENCE.json`, 'utf8'));

describe('evaluation on stories260K', () => {
  let lm: LoadedModel;
  let local: LocalLM;
  beforeAll(async () => {
    lm = await loadModel(STORIES);
    local = new LocalLM(lm, { batchSize: 3 });
  });

  it('pairs context and continuation as lm-evaluation-harness does', () => {
    const enc = (s: string) => local.encode(s);
    // trailing spaces of the context move to the continuation
    const a = encodePair(enc, 'Once upon a ', 'time');
    expect(a.context).toEqual(enc('Once upon a'));
    expect([...a.context, ...a.continuation]).toEqual(enc('Once upon a time'));
    // the split is at the context's token count of the whole encoding, even where tokens merge
    // across the cut ("Lil" + "y" is not how "Lily" is tokenized)
    const b = encodePair(enc, 'Lil', 'y went home');
    expect(b.context).toEqual(enc('Lil'));
    expect(b.continuation).toEqual(enc('Lily went home').slice(enc('Lil').length));
    expect([...b.context, ...b.continuation]).not.toEqual(enc('Lily went home'));
  });

  it('loglikelihood equals the teacher-forced sum of next-token log-probs, whatever the batching', async () => {
    const reqs = [
      { context: 'Once upon a time', continuation: ', there was a little girl' },
      { context: 'Tom had a red ball.', continuation: ' He liked it.' },
      { context: 'The sun', continuation: ' was hot' },
      { context: 'She said', continuation: ' "hello"' },
    ];
    const got = await local.loglikelihood(reqs);
    const single = await new LocalLM(lm, { batchSize: 1 }).loglikelihood(reqs);
    for (const [i, r] of reqs.entries()) {
      const { context, continuation } = encodePair((s) => local.encode(s), r.context, r.continuation);
      const ids = [1, ...context, ...continuation];
      const lp = (await nextTokenLogprobs(lm.model, ids)).slice(-continuation.length);
      expect(got[i].tokens).toBe(continuation.length);
      expect(Math.abs(got[i].logprob - lp.reduce((a, b) => a + b, 0))).toBeLessThan(1e-4);
      expect(Math.abs(single[i].logprob - got[i].logprob)).toBeLessThan(1e-4);
    }
  });

  it('marks the reference greedy continuation as greedy, and a changed one as not', async () => {
    const g = ref.greedy[0];
    // the first 12 greedy tokens, as text (cut at a token boundary)
    const head = lm.tokenizer!.decode(g.prompt_ids);
    const cont = lm.tokenizer!.decode([...g.prompt_ids, ...g.continuation_ids.slice(0, 12)]).slice(head.length);
    const [yes, no] = await local.loglikelihood([
      { context: g.prompt, continuation: cont },
      { context: g.prompt, continuation: ', there was a little dog' },
    ]);
    expect(yes.isGreedy).toBe(true);
    expect(no.isGreedy).toBe(false);
    expect(yes.logprob).toBeGreaterThan(no.logprob);
  });

  it('rolling log-likelihood of a short text equals teacher forcing from BOS', async () => {
    const text = 'Lily and Ben played in the park. They were happy.';
    const [rolling] = await local.loglikelihoodRolling([text]);
    const lp = await nextTokenLogprobs(lm.model, [1, ...local.encode(text)]);
    expect(Math.abs(rolling - lp.reduce((a, b) => a + b, 0))).toBeLessThan(1e-4);
  });

  it('an option longer than the context window is read in rolling windows, with or without the prefix cache', async () => {
    const text = readFileSync(`${DATA}/pretrain_text/tinyshakespeare.txt`, 'utf8').slice(0, 2400);
    const req = { context: 'ROMEO:', continuation: ` ${text}` };
    const { context, continuation } = encodePair((s) => local.encode(s), req.context, req.continuation);
    const maxLen = lm.model.config.maxPositionEmbeddings;
    expect(continuation.length).toBeGreaterThan(maxLen); // no single window holds every target
    // Each window predicts up to maxLen new tokens from as much of the sequence before them as fits.
    const ids = [1, ...context, ...continuation];
    let want = 0;
    for (let at = ids.length - continuation.length; at < ids.length; at += maxLen) {
      const n = Math.min(maxLen, ids.length - at);
      const input = ids.slice(Math.max(0, at + n - 1 - maxLen), at + n - 1);
      const hidden = lm.model.forward([input]);
      const logp = tf.tidy(() => tf.logSoftmax(lm.model.logits(hidden.reshape([input.length, -1]) as tf.Tensor2D)));
      const rows = (await logp.array()) as number[][];
      tf.dispose([hidden, logp]);
      for (let j = 0; j < n; j++) want += rows[input.length - n + j][ids[at + j]];
    }
    const [cached] = await local.loglikelihood([req]);
    const [plain] = await new LocalLM(lm, { prefixCache: false }).loglikelihood([req]);
    for (const r of [cached, plain]) {
      expect(r.tokens).toBe(continuation.length);
      expect(Math.abs(r.logprob - want)).toBeLessThan(1e-3);
      expect(r.isGreedy).toBe(false);
    }
  });

  it('formats ARC as lm-eval does, with few-shot examples from train', () => {
    const task = TASKS.arc_easy;
    const test = task.loadSplit(`${DATA}/arc`, 'eval');
    expect(test).toHaveLength(2376);
    expect(test[0].query).toBe(
      'Question: Which statement best explains why photosynthesis is the foundation of most food webs?\nAnswer:',
    );
    expect(test[0].choices![test[0].gold!]).toBe('Sunlight is the source of energy for nearly all ecosystems.');
    const train = task.loadSplit(`${DATA}/arc`, 'fewshot');
    const prefix = fewshotPrefix(task, 'ppl', test[0], train.slice(0, 2));
    expect(prefix).toBe(
      `${train[0].query} ${train[0].choices![train[0].gold!]}\n\n${train[1].query} ${train[1].choices![train[1].gold!]}\n\n`,
    );
  });

  it('scores ARC instances by the highest log-likelihood (acc) and per-character log-likelihood (acc_norm)', async () => {
    const r = await evaluateTask(local, 'arc_easy', { limit: 12, shots: 1 });
    expect(r.n).toBe(12);
    expect(r.shots).toBe(1);
    for (const s of r.samples) {
      const args = Object.values(s.arguments) as { arg_0: string; arg_1: string }[];
      expect(args[0].arg_0.split('\n\n')).toHaveLength(2);
      const all = (s.filtered_resps as [number, boolean][]).map(([ll]) => ll);
      const direct = await local.loglikelihood(args.map((a) => ({ context: a.arg_0, continuation: a.arg_1 })));
      direct.forEach((d, j) => expect(Math.abs(d.logprob - all[j])).toBeLessThan(1e-4));
      // The options, then the same options after the content-free "Answer:" (mutual information).
      const n = s.doc.choices!.length;
      expect(args.slice(n).every((a) => a.arg_0 === 'Answer:')).toBe(true);
      const lls = all.slice(0, n),
        free = all.slice(n);
      const pick = (xs: number[]) => (xs.indexOf(Math.max(...xs)) === Number(s.target) ? 1 : 0);
      expect(s.metrics.acc).toBe(pick(lls));
      expect(s.metrics.acc_norm).toBe(pick(lls.map((ll, j) => ll / s.doc.choices![j].length)));
      expect(s.metrics.acc_mi).toBe(pick(lls.map((ll, j) => ll - free[j])));
    }
    expect(r.metrics.acc.value).toBeCloseTo(r.samples.filter((s) => s.metrics.acc).length / 12, 12);
  });

  it('reads HellaSwag (llama.cpp layout) with lm-eval clean-up, and scores multi-token endings', async () => {
    const docs = TASKS.hellaswag.loadSplit(`${DATA}/hellaswag`, 'eval');
    expect(docs).toHaveLength(10042);
    expect(docs[0].query).toBe('Roof shingle removal: A man is sitting on a roof. he');
    expect(docs[0].choices).toEqual([
      'is using wrap to wrap a pair of skis.',
      'is ripping level tiles off.',
      "is holding a rubik's cube.",
      'starts pulling up roofing on a roof.',
    ]);
    expect(docs[0].gold).toBe(3);
    // " [title]" -> ". ", other [tags] dropped, double spaces collapsed
    expect(preprocessHellaswag('How to x [title] Do y [step] now.  Done ')).toBe('How to x. Do y now. Done');
    const r = await evaluateTask(local, 'hellaswag', { limit: 6 });
    expect(
      r.samples.every(
        (s) => s.filtered_resps.length === 4 && (s.filtered_resps as [number, boolean][]).every(([x]) => x < 0),
      ),
    ).toBe(true);
    const dir = tmp();
    writeFileSync(`${dir}/hellaswag_val_full.txt`, 'ctx\n7\na\nb\nc\nd\n');
    expect(() => TASKS.hellaswag.loadSplit(dir, 'eval')).toThrow(/line 2: the gold label should be 0-3/);
  });

  it('reports a malformed data row with its file, row and field', () => {
    const dir = tmp();
    const good = readFileSync(`${DATA}/arc/ARC-Easy-Test.jsonl`, 'utf8').split('\n').slice(0, 2);
    const bad = JSON.parse(good[1]);
    bad.answerKey = 'Z';
    writeFileSync(`${dir}/ARC-Easy-Test.jsonl`, [good[0], JSON.stringify(bad)].join('\n'));
    const err = llmboxErrorOf(() => TASKS.arc_easy.loadSplit(dir, 'eval'));
    expect(err.message).toMatch(/row 2: answerKey Z/);
    expect(err.field).toBe('answerKey');
    expect(err.file).toBe(`${dir}/ARC-Easy-Test.jsonl`);
  });

  it('llmbox eval --json prints results per task', () => {
    const bin = fileURLToPath(new URL('../bin/llmbox.js', import.meta.url));
    const r = spawnSync(
      process.execPath,
      [bin, 'eval', '-m', STORIES, '-d', 'arc_easy,arc_challenge', '--limit', '8', '--json'],
      { encoding: 'utf8' },
    );
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    for (const t of ['arc_easy', 'arc_challenge']) {
      expect(j.results[t].n).toBe(8);
      expect(j.results[t].acc).toBeGreaterThanOrEqual(0);
      expect(j.results[t].acc).toBeLessThanOrEqual(1);
    }
    const bad = spawnSync(process.execPath, [bin, 'eval', '-m', STORIES, '-d', 'nope'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/unknown task nope[\s\S]*llmbox tasks/);
  });
});
