import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { describe, expect, it } from 'vitest';
import { evaluate } from '../lib/eval/evaluate.js';
import { LocalLM } from '../lib/eval/local.js';
import { ScriptedLM } from './helpers/scripted.js';
import { loadTaskConfig } from '../lib/eval/tasks/declarative.js';
import { readJsonl } from '../lib/eval/tasks/files.js';
import { TASKS } from '../lib/eval/tasks/index.js';
import { loadModel } from '../lib/models/load.js';
import { llmboxErrorOf, STORIES, tmp } from './helpers/models.js';

const DATA = fileURLToPath(new URL('../../shared/data', import.meta.url));

describe('tasks written as lm-eval-style JSON configs', () => {
  it('an ARC config over a JSONL copy scores exactly like the built-in arc_easy', async () => {
    const dir = tmp();
    const rows = readJsonl(`${DATA}/arc/ARC-Easy-Test.jsonl`).slice(0, 6).map((r) => {
      const q = r.question as { stem: string; choices: { text: string; label: string }[] };
      return { question: q.stem, choices: q.choices.map((c) => c.text), label: q.choices.map((c) => c.label).indexOf(r.answerKey as string) };
    });
    writeFileSync(`${dir}/arc.jsonl`, rows.map((r) => JSON.stringify(r)).join('\n'));
    writeFileSync(`${dir}/my_arc.json`, JSON.stringify({
      task: 'my_arc', test_split: 'arc.jsonl', output_type: 'multiple_choice',
      doc_to_text: 'Question: {{ question }}\nAnswer:', doc_to_choice: 'choices', doc_to_target: '{{ label }}',
    }));
    const lm = new LocalLM(await loadModel(STORIES));
    const mine = await evaluate(lm, [`${dir}/my_arc.json`], {});
    const builtin = await evaluate(lm, ['arc_easy'], { limit: 6 });
    expect(mine.results[0].task).toBe('my_arc');
    mine.results[0].samples.forEach((s, i) => {
      const b = builtin.results[0].samples[i];
      expect(s.arguments.gen_args_0).toEqual(b.arguments.gen_args_0);
      expect(s.filtered_resps).toEqual(b.filtered_resps.slice(0, s.filtered_resps.length));
      expect(s.metrics.acc).toBe(b.metrics.acc);
    });
  });

  it('reads Parquet, renders generation prompts and scores exact match', async () => {
    const dir = tmp();
    const rows = readJsonl(`${DATA}/nq_open/NQ-open.dev.jsonl`).slice(0, 5) as { question: string; answer: string[] }[];
    const buf = parquetWriteBuffer({ columnData: [
      { name: 'question', data: rows.map((r) => r.question), type: 'STRING' },
      { name: 'answer', data: rows.map((r) => r.answer[0]), type: 'STRING' },
    ] });
    writeFileSync(`${dir}/nq.parquet`, new Uint8Array(buf));
    writeFileSync(`${dir}/nq.json`, JSON.stringify({
      task: 'my_nq', test_split: 'nq.parquet', output_type: 'generate_until', doc_to_text: 'Q: {{ question }}?\nA:',
      doc_to_target: '{{ answer }}', generation_kwargs: { until: ['\n'], max_gen_toks: 16 },
    }));
    const task = await loadTaskConfig(`${dir}/nq.json`);
    const docs = task.loadSplit('', 'eval');
    expect(docs.map((d) => d.query)).toEqual(TASKS.nq_open.loadSplit(`${DATA}/nq_open`, 'eval').slice(0, 5).map((d) => d.query));
    // Right on 3 of 5.
    const answers = new Map(docs.map((d, i) => [d.query, i < 3 ? ` ${d.references![0]}` : ' no idea']));
    const scripted = new ScriptedLM((x) => answers.get(x.context)!);
    const run = await evaluate(scripted, [`${dir}/nq.json`], {});
    expect(run.results[0].metrics.exact_match.value).toBeCloseTo(0.6, 12);
  });

  it('names the config file and field of a bad config', async () => {
    const dir = tmp();
    writeFileSync(`${dir}/a.json`, JSON.stringify({ task: 't', test_split: 'x.jsonl', output_type: 'multiple_choice', doc_to_text: '{{q}}' }));
    const missing = await loadTaskConfig(`${dir}/a.json`).catch((e) => e);
    expect(missing.message).toMatch(/missing field doc_to_target/);
    expect(missing.file).toBe(`${dir}/a.json`);
    writeFileSync(`${dir}/b.json`, JSON.stringify({ task: 't', test_split: 'x.xml', output_type: 'generate_until', doc_to_text: '{{q}}', doc_to_target: '{{a}}' }));
    expect((await loadTaskConfig(`${dir}/b.json`).catch((e) => e)).message).toMatch(/unknown data file type .xml/);
    writeFileSync(`${dir}/rows.jsonl`, '{"q": "Is it?", "choices": ["yes", "no"], "label": "maybe"}\n');
    writeFileSync(`${dir}/c.json`, JSON.stringify({ task: 't', test_split: 'rows.jsonl', output_type: 'multiple_choice', doc_to_text: '{{q}}', doc_to_choice: 'choices', doc_to_target: '{{label}}' }));
    const bad = await loadTaskConfig(`${dir}/c.json`).catch((e) => e);
    expect(bad.message).toMatch(/row 1: doc_to_target gave "maybe"/);
    expect(bad.file).toBe(`${dir}/rows.jsonl`);
    expect(llmboxErrorOf(() => TASKS.arc_easy.loadSplit(dir, 'eval')).file).toBe(`${dir}/ARC-Easy-Test.jsonl`);
  });
});
