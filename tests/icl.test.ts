import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { evaluate, registerConfigs } from '../lib/eval/evaluate.js';
import { apeInstruction, apeProposalPrompt, bestCandidate } from '../lib/eval/icl/ape.js';
import { bestByEntropy, labelEntropy, orderings, permutations } from '../lib/eval/icl/globale.js';
import { kateNeighbours } from '../lib/eval/icl/kate.js';
import type { GenerateUntilRequest, LoglikelihoodRequest } from '../lib/eval/lm.js';
import { LocalLM } from '../lib/eval/local.js';
import type { Doc } from '../lib/eval/tasks/types.js';
import { LlmboxError } from '../lib/errors.js';
import { loadModel } from '../lib/models/load.js';
import { seededRandom } from '../lib/util/random.js';
import { STORIES, tmp } from './helpers/models.js';
import { ScriptedLM } from './helpers/scripted.js';

const doc = (id: string): Doc => ({ id, query: id });

describe('KATE: nearest examples by embedding', () => {
  const pool = ['a', 'b', 'c', 'd'].map(doc);
  const vectors = [
    [1, 0],
    [0.9, 0.1],
    [0, 1],
    [0.8, 0.6],
  ];
  it('takes the k most similar by cosine, nearest last by default (KATE) or first (LLMBox)', () => {
    // cosines to [1, 0]: a 1, b 0.994, d 0.8, c 0
    expect(kateNeighbours([1, 0], 'x', pool, vectors, 3, 'nearest-last').map((d) => d.id)).toEqual(['d', 'b', 'a']);
    expect(kateNeighbours([1, 0], 'x', pool, vectors, 3, 'nearest-first').map((d) => d.id)).toEqual(['a', 'b', 'd']);
    // scale does not matter, direction does
    expect(kateNeighbours([5, 0], 'x', pool, vectors, 1, 'nearest-first')[0].id).toBe('a');
  });
  it('never picks the instance itself, and ties go to the earlier pool example', () => {
    expect(kateNeighbours([1, 0], 'a', pool, vectors, 2, 'nearest-first').map((d) => d.id)).toEqual(['b', 'd']);
    const twins = kateNeighbours(
      [0, 1],
      'x',
      pool,
      [
        [0, 1],
        [0, 2],
        [1, 0],
        [0, 3],
      ],
      3,
      'nearest-first',
    );
    expect(twins.map((d) => d.id)).toEqual(['a', 'b', 'd']);
  });
});

describe('GlobalE: orderings scored by the entropy of predicted labels', () => {
  it('computes the entropy of the label distribution', () => {
    expect(labelEntropy([0, 0, 0, 0])).toBe(0);
    expect(labelEntropy([0, 1, 2, 3])).toBeCloseTo(Math.log(4), 12);
    // p = (1/2, 1/4, 1/4): 1.5 ln 2
    expect(labelEntropy([1, 1, 0, 2])).toBeCloseTo(1.5 * Math.log(2), 12);
  });
  it('tries all k! orderings when few, distinct seeded samples when many', () => {
    expect(permutations(3)).toEqual([
      [0, 1, 2],
      [0, 2, 1],
      [1, 0, 2],
      [1, 2, 0],
      [2, 0, 1],
      [2, 1, 0],
    ]);
    expect(orderings(4, 24, seededRandom(1))).toHaveLength(24);
    const sampled = orderings(6, 10, seededRandom(1));
    expect(sampled).toHaveLength(10);
    expect(new Set(sampled.map((p) => p.join())).size).toBe(10);
    expect(sampled[0]).toEqual([0, 1, 2, 3, 4, 5]);
    for (const p of sampled) expect([...p].sort()).toEqual([0, 1, 2, 3, 4, 5]);
  });
  it('keeps the ordering with the highest entropy, the first on ties', () => {
    expect(
      bestByEntropy([
        [0, 0, 0],
        [0, 1, 0],
        [0, 1, 2],
        [2, 1, 0],
      ]).best,
    ).toBe(2);
    expect(
      bestByEntropy([
        [1, 1],
        [0, 0],
      ]).best,
    ).toBe(0);
  });
});

describe('APE: proposed instructions', () => {
  it('asks in the forward-generation template and reads the completion as an instruction', () => {
    const p = apeProposalPrompt([
      ['2+2', '4'],
      ['3+3', '6'],
    ]);
    expect(p).toContain('I gave a friend an instruction and 2 inputs.');
    expect(p).toContain('Input: 2+2\nOutput: 4\n\nInput: 3+3\nOutput: 6\n\nThe instruction was to');
    expect(apeInstruction(' add the two numbers.\nInput: 5')).toBe('Add the two numbers.');
    expect(apeInstruction('  \n')).toBe('');
  });
  it('keeps the best dev score, the higher tie-break on equal scores, else the first', () => {
    expect(
      bestCandidate([
        { score: 0.5, tieBreak: 0 },
        { score: 0.7, tieBreak: -9 },
      ]),
    ).toBe(1);
    expect(
      bestCandidate([
        { score: 0.5, tieBreak: -2 },
        { score: 0.5, tieBreak: -1 },
      ]),
    ).toBe(1);
    expect(
      bestCandidate([
        { score: 0.5, tieBreak: -1 },
        { score: 0.5, tieBreak: -1 },
      ]),
    ).toBe(0);
  });
});

/** A crafted multiple-choice task: "topic-N" instances whose gold option is their topic's colour. */
function craftedTask(dir: string, name: string): string {
  const topics = ['red', 'green', 'blue', 'gold'];
  const rows = (n: number, from: number) =>
    Array.from({ length: n }, (_, i) => {
      const t = (i + from) % topics.length;
      return { id: `${name}-${i + from}`, question: `${topics[t]} item ${i + from}`, choices: topics, label: t };
    });
  const line = (rs: object[]) => rs.map((r) => JSON.stringify(r)).join('\n') + '\n';
  writeFileSync(join(dir, 'test.jsonl'), line(rows(8, 0)));
  writeFileSync(join(dir, 'train.jsonl'), line(rows(30, 100)));
  const config = join(dir, `${name}.json`);
  writeFileSync(
    config,
    JSON.stringify({
      task: name,
      test_split: 'test.jsonl',
      fewshot_split: 'train.jsonl',
      output_type: 'multiple_choice',
      doc_to_text: 'Q: {{question}}\nA:',
      doc_to_choice: 'choices',
      doc_to_target: '{{label}}',
    }),
  );
  return config;
}

/** The colour word of the instance (the last "Q:" of the prompt). */
const instanceTopic = (context: string) => /Q: (\w+) item \d+\nA:$/.exec(context)?.[1];

describe('selection inside evaluation', () => {
  let dir: string;
  let task: string;
  beforeAll(async () => {
    dir = tmp('llmbox-icl-');
    [task] = await registerConfigs([craftedTask(dir, 'icl_crafted')]);
  });

  it('KATE gives each instance the examples nearest it, nearest last', async () => {
    const colours = ['red', 'green', 'blue', 'gold'];
    const lm = new ScriptedLM(() => '');
    // One axis per colour, plus a small offset by the item number so that neighbours are ordered.
    (lm as ScriptedLM & { embed: (t: string[]) => Promise<number[][]> }).embed = async (texts) =>
      texts.map((t) => {
        const [, c, n] = /(\w+) item (\d+)/.exec(t)!;
        return [...colours.map((x) => (x === c ? 1 : 0)), Number(n) / 1000];
      });
    const run = await evaluate(lm, [task], { shots: 3, icl: { strategy: 'kate', cache: false } });
    const r = run.results[0];
    expect(r.icl).toMatchObject({ strategy: 'kate', settings: { order: 'nearest-last' }, cached: false });
    for (const s of r.samples) {
      const prompt = (s.arguments.gen_args_0 as { arg_0: string }).arg_0;
      const topic = instanceTopic(prompt);
      const shown = [...prompt.matchAll(/Q: (\w+) item (\d+)/g)].slice(0, 3);
      expect(shown.map((m) => m[1])).toEqual([topic, topic, topic]);
      // the same colour everywhere; the smallest offsets are nearest the instance's (item < 8), and come last
      const items = shown.map((m) => Number(m[2]));
      expect(items).toEqual([...items].sort((a, b) => b - a));
    }
  });

  it('KATE on a model without embeddings is refused, naming --embed-model', async () => {
    const err = await evaluate(new ScriptedLM(() => ''), [task], {
      shots: 2,
      icl: { strategy: 'kate', cache: false },
    }).catch((e) => e);
    expect(err).toBeInstanceOf(LlmboxError);
    expect(String(err.fix)).toContain('--embed-model');
    const none = await evaluate(new ScriptedLM(() => ''), [task], { icl: { strategy: 'kate', cache: false } }).catch(
      (e) => e,
    );
    expect(none.field).toBe('--shots');
  });

  it('GlobalE keeps an ordering whose predictions spread over the labels', async () => {
    // The model answers "red" to everything when the prompt opens with the lowest-numbered of its
    // examples; otherwise it answers right. Those orderings therefore score entropy 0.
    const opensLowest = (context: string) => {
      const shown = [...context.matchAll(/item (\d+)/g)].slice(0, -1).map((m) => Number(m[1]));
      return shown.length > 0 && shown[0] === Math.min(...shown);
    };
    const ll = (r: LoglikelihoodRequest) => {
      const want = opensLowest(r.context) ? 'red' : instanceTopic(r.context);
      return r.continuation.trim() === want ? 0 : -5;
    };
    const lm = new ScriptedLM(() => '', ll);
    const run = await evaluate(lm, [task], {
      shots: 3,
      icl: { strategy: 'globale', probes: 8, cache: false },
    });
    const info = run.results[0].icl!;
    const details = info.details as { orderings: number; entropy: { best: number; min: number }; chosen: string[] };
    expect(details.orderings).toBe(6);
    expect(details.entropy.best).toBeGreaterThan(details.entropy.min);
    // the same ordering for every instance, not opening with its lowest-numbered example
    const prompts = run.results[0].samples.map((s) => (s.arguments.gen_args_0 as { arg_0: string }).arg_0);
    expect(new Set(prompts.map((p) => p.split('\n')[0])).size).toBe(1);
    expect(prompts.some(opensLowest)).toBe(false);
    // every instance is then answered right
    expect(run.results[0].metrics.acc.value).toBe(1);
  });

  it('GlobalE needs options to predict and at least two examples', async () => {
    const lm = new ScriptedLM(() => '');
    const one = await evaluate(lm, [task], { shots: 1, icl: { strategy: 'globale', cache: false } }).catch((e) => e);
    expect(one).toBeInstanceOf(LlmboxError);
    expect(one.field).toBe('--shots');
    const tooFew = await evaluate(lm, [task], {
      shots: 3,
      icl: { strategy: 'globale', probes: 40, cache: false },
    }).catch((e) => e);
    expect(tooFew).toBeInstanceOf(LlmboxError);
    expect(tooFew.message).toMatch(/needs 43 examples outside the evaluated instances/);
  });

  it('APE keeps the proposal that scores best on dev, caches the choice, and never loses to the task default', async () => {
    const proposals = [' pick the first colour', ' name the colour of the item'];
    let proposed = 0;
    const gen = (r: GenerateUntilRequest) => {
      expect(r.context).toMatch(/The instruction was to$/);
      return proposals[proposed++ % proposals.length];
    };
    // Under "Name the colour of the item" the model is right; under anything else it says red.
    const ll = (r: LoglikelihoodRequest) => {
      const right = r.context.startsWith('Name the colour of the item\n\n');
      const want = right ? instanceTopic(r.context) : 'red';
      return r.continuation.trim() === want ? 0 : -5;
    };
    const cache = tmp('llmbox-icl-cache-');
    const run1 = await evaluate(new ScriptedLM(gen, ll), [task], {
      shots: 2,
      icl: { strategy: 'ape', candidates: 4, dev: 8, cache },
    });
    const r = run1.results[0];
    const details = r.icl!.details as { kept: string; candidates: { instruction: string; score: number }[] };
    expect(details.kept).toBe('Name the colour of the item');
    expect(details.candidates.map((c) => c.instruction)).toEqual([
      'task default',
      'Pick the first colour',
      'Name the colour of the item',
    ]);
    expect(details.candidates[2].score).toBe(1);
    expect(details.candidates[0].score).toBeLessThan(1);
    expect(r.metrics.acc.value).toBe(1);
    expect(proposed).toBe(4);
    // A second run restores the selection: no proposals asked, the same prompts.
    const run2 = await evaluate(new ScriptedLM(gen, ll), [task], {
      shots: 2,
      icl: { strategy: 'ape', candidates: 4, dev: 8, cache },
    });
    expect(proposed).toBe(4);
    expect(run2.results[0].icl!.cached).toBe(true);
    expect(run2.results[0].promptHash).toBe(r.promptHash);

    // When every proposal scores worse, the task's own prompt stays.
    const sayRed = (q: LoglikelihoodRequest) =>
      q.continuation.trim() === (q.context.startsWith('Say red') ? 'red' : instanceTopic(q.context)) ? 0 : -5;
    const worse = await evaluate(new ScriptedLM(() => ' say red', sayRed), [task], {
      shots: 2,
      icl: { strategy: 'ape', candidates: 2, dev: 8, cache: false },
    });
    expect((worse.results[0].icl!.details as { kept: string }).kept).toBe('task default');
  });

  it('the default draw is unchanged by the selection module (same prompts as no icl option)', async () => {
    const lm = new ScriptedLM(() => '');
    const plain = await evaluate(lm, [task], { shots: 2 });
    const random = await evaluate(lm, [task], { shots: 2, icl: { strategy: 'random' } });
    expect(random.results[0].promptHash).toBe(plain.results[0].promptHash);
    expect(plain.results[0].icl).toBeUndefined();
  });
});

describe('embeddings of a local model', () => {
  it('mean-pools the final hidden states, and padding in a batch changes nothing', async () => {
    const loaded = await loadModel(STORIES);
    const lm = new LocalLM(loaded, { batchSize: 4 });
    const texts = ['Once upon a time there was a cat', 'Lily', 'The dog ran to the park and played all day long'];
    const together = await lm.embed(texts);
    for (const [i, t] of texts.entries()) {
      const [alone] = await lm.embed([t]);
      expect(alone).toHaveLength(loaded.model.config.hiddenSize);
      for (let j = 0; j < alone.length; j++) expect(Math.abs(alone[j] - together[i][j])).toBeLessThan(1e-4);
    }
    // the mean of the hidden rows, computed from forward() by hand
    const ids = lm.encode(texts[1]);
    const hidden = loaded.model.forward([ids]);
    const rows = (await hidden.array())[0];
    hidden.dispose();
    const manual = rows[0].map((_, j) => rows.reduce((a, r) => a + r[j], 0) / rows.length);
    for (let j = 0; j < manual.length; j++) expect(Math.abs(manual[j] - together[1][j])).toBeLessThan(1e-5);
  });
});

describe('llmbox eval --icl', () => {
  const bin = fileURLToPath(new URL('../bin/llmbox.js', import.meta.url));
  it('runs KATE on stories260K and records the strategy and prefix reuse; refuses GlobalE on a generation task', () => {
    const dir = tmp('llmbox-icl-cli-');
    const config = craftedTask(dir, 'icl_cli');
    const env = { ...process.env, LLMBOX_CACHE_DIR: join(dir, 'cache') };
    const kate = () =>
      spawnSync(
        process.execPath,
        [
          bin,
          'eval',
          '-m',
          STORIES,
          '-d',
          config,
          '--shots',
          '2',
          '--icl',
          'kate',
          '--kate-order',
          'nearest-first',
          '--json',
        ],
        { encoding: 'utf8', env },
      );
    const r = kate();
    expect(r.status, r.stderr).toBe(0);
    const first = JSON.parse(r.stdout);
    expect(first.results.icl_cli).toMatchObject({ icl: 'kate', n: 8, shots: 2 });
    expect(first.costs.icl_cli).toMatchObject({ icl_cached: false });
    expect(first.costs.icl_cli.prefix_computed_tokens).toBeGreaterThan(0);
    const second = JSON.parse(kate().stdout);
    expect(second.costs.icl_cli).toMatchObject({ icl_cached: true, icl_seconds: 0 });
    expect(second.results).toEqual(first.results);

    writeFileSync(
      join(dir, 'gen.json'),
      JSON.stringify({
        task: 'icl_gen',
        test_split: 'test.jsonl',
        fewshot_split: 'train.jsonl',
        output_type: 'generate_until',
        doc_to_text: 'Q: {{question}}\nA:',
        doc_to_target: '{{label}}',
      }),
    );
    const bad = spawnSync(
      process.execPath,
      [bin, 'eval', '-m', STORIES, '-d', join(dir, 'gen.json'), '--shots', '2', '--icl', 'globale', '--limit', '2'],
      { encoding: 'utf8', env },
    );
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--icl globale scores predicted options/);
  }, 60_000);
});
