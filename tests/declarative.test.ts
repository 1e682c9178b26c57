// Needs ../shared/data (the benchmark and training data sets): scripts/test.mjs skips this file without it.
import { writeFileSync } from 'node:fs';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { describe, expect, it } from 'vitest';
import { evaluate } from '../lib/eval/evaluate.js';
import { LocalLM } from '../lib/eval/local.js';
import { ScriptedLM } from './helpers/scripted.js';
import { loadTaskConfig, registerTaskConfig, templateVariables } from '../lib/eval/tasks/declarative.js';
import { Template } from '@huggingface/jinja';
import { LlmboxError } from '../lib/errors.js';
import { readJsonl } from '../lib/data/files.js';
import { TASKS } from '../lib/eval/tasks/index.js';
import { loadModel } from '../lib/models/load.js';
import { SHARED_DATA, STORIES, llmboxErrorOf, tmp } from './helpers/models.js';

const DATA = SHARED_DATA;

describe('tasks written as lm-eval-style JSON configs', () => {
  it('an ARC config over a JSONL copy scores exactly like the built-in arc_easy', async () => {
    const dir = tmp();
    const rows = readJsonl(`${DATA}/arc/ARC-Easy-Test.jsonl`)
      .slice(0, 6)
      .map((r) => {
        const q = r.question as { stem: string; choices: { text: string; label: string }[] };
        return {
          question: q.stem,
          choices: q.choices.map((c) => c.text),
          label: q.choices.map((c) => c.label).indexOf(r.answerKey as string),
        };
      });
    writeFileSync(`${dir}/arc.jsonl`, rows.map((r) => JSON.stringify(r)).join('\n'));
    writeFileSync(
      `${dir}/my_arc.json`,
      JSON.stringify({
        task: 'my_arc',
        test_split: 'arc.jsonl',
        output_type: 'multiple_choice',
        doc_to_text: 'Question: {{ question }}\nAnswer:',
        doc_to_choice: 'choices',
        doc_to_target: '{{ label }}',
      }),
    );
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
    const buf = parquetWriteBuffer({
      columnData: [
        { name: 'question', data: rows.map((r) => r.question), type: 'STRING' },
        { name: 'answer', data: rows.map((r) => r.answer[0]), type: 'STRING' },
      ],
    });
    writeFileSync(`${dir}/nq.parquet`, new Uint8Array(buf));
    writeFileSync(
      `${dir}/nq.json`,
      JSON.stringify({
        task: 'my_nq',
        test_split: 'nq.parquet',
        output_type: 'generate_until',
        doc_to_text: 'Q: {{ question }}?\nA:',
        doc_to_target: '{{ answer }}',
        generation_kwargs: { until: ['\n'], max_gen_toks: 16 },
      }),
    );
    const task = await loadTaskConfig(`${dir}/nq.json`);
    const docs = task.loadSplit('', 'eval');
    expect(docs.map((d) => d.query)).toEqual(
      TASKS.nq_open
        .loadSplit(`${DATA}/nq_open`, 'eval')
        .slice(0, 5)
        .map((d) => d.query),
    );
    // Right on 3 of 5.
    const answers = new Map(docs.map((d, i) => [d.query, i < 3 ? ` ${d.references![0]}` : ' no idea']));
    const scripted = new ScriptedLM((x) => answers.get(x.context)!);
    const run = await evaluate(scripted, [`${dir}/nq.json`], {});
    expect(run.results[0].metrics.exact_match.value).toBeCloseTo(0.6, 12);
  });

  it('names the config file and field of a bad config', async () => {
    const dir = tmp();
    writeFileSync(
      `${dir}/a.json`,
      JSON.stringify({ task: 't', test_split: 'x.jsonl', output_type: 'multiple_choice', doc_to_text: '{{q}}' }),
    );
    const missing = await loadTaskConfig(`${dir}/a.json`).catch((e) => e);
    expect(missing.message).toMatch(/missing field doc_to_target/);
    expect(missing.file).toBe(`${dir}/a.json`);
    writeFileSync(
      `${dir}/b.json`,
      JSON.stringify({
        task: 't',
        test_split: 'x.xml',
        output_type: 'generate_until',
        doc_to_text: '{{q}}',
        doc_to_target: '{{a}}',
      }),
    );
    expect((await loadTaskConfig(`${dir}/b.json`).catch((e) => e)).message).toMatch(/unknown data file type .xml/);
    writeFileSync(`${dir}/rows.jsonl`, '{"q": "Is it?", "choices": ["yes", "no"], "label": "maybe"}\n');
    writeFileSync(
      `${dir}/c.json`,
      JSON.stringify({
        task: 't',
        test_split: 'rows.jsonl',
        output_type: 'multiple_choice',
        doc_to_text: '{{q}}',
        doc_to_choice: 'choices',
        doc_to_target: '{{label}}',
      }),
    );
    const bad = await loadTaskConfig(`${dir}/c.json`).catch((e) => e);
    expect(bad.message).toMatch(/row 1: doc_to_target gave "maybe"/);
    expect(bad.file).toBe(`${dir}/rows.jsonl`);
    expect(llmboxErrorOf(() => TASKS.arc_easy.loadSplit(dir, 'eval')).file).toBe(`${dir}/ARC-Easy-Test.jsonl`);
  });

  it('checks every field: types, unknown fields, names, strict variables, until, empty splits, shots beyond the pool, built-ins', async () => {
    const dir = tmp();
    writeFileSync(
      `${dir}/rows.jsonl`,
      [
        '{"q": "Is it?", "choices": ["yes", "no"], "label": 0}',
        '{"q": "Or not?", "choices": ["yes", "no"], "label": 1}',
      ].join('\n'),
    );
    writeFileSync(`${dir}/empty.jsonl`, '');
    const base = {
      task: 'chk',
      test_split: 'rows.jsonl',
      output_type: 'multiple_choice',
      doc_to_text: '{{ q }}',
      doc_to_choice: 'choices',
      doc_to_target: '{{ label }}',
    };
    const bad = async (patch: Record<string, unknown>) => {
      const file = `${dir}/c${Math.random().toString(36).slice(2)}.json`;
      writeFileSync(file, JSON.stringify({ ...base, ...patch }));
      const e = await loadTaskConfig(file).then(
        () => null,
        (err) => err,
      );
      expect(e, JSON.stringify(patch)).toBeInstanceOf(LlmboxError);
      return e as LlmboxError;
    };
    expect((await bad({ num_fewshot: '3' })).message).toMatch(
      /field num_fewshot must be a non-negative integer, got "3"/,
    );
    expect((await bad({ metric_list: [{ metric: 'acc' }] })).message).toMatch(/unknown field metric_list/);
    expect((await bad({ method: 'gen' })).field).toBe('method');
    expect((await bad({ task: '../arc_easy' })).message).toMatch(/no path separators/);
    const strict = await bad({ doc_to_text: 'Q: {{ question }}' });
    expect(strict.message).toMatch(/row 1: doc_to_text reads \{\{ question \}\}, which the row does not have/);
    expect(strict.fix).toMatch(/q, choices, label/);
    expect((await bad({ test_split: 'empty.jsonl' })).message).toMatch(/test_split has no rows/);
    expect(
      (await bad({ output_type: 'generate_until', doc_to_choice: undefined, generation_kwargs: { until: 5 } })).message,
    ).toMatch(/generation_kwargs.until must be a string or a list of strings/);
    // Loop and set variables and Jinja's globals are not row fields.
    const loops = new Template(
      '{% set n = 2 %}{% for c in choices %}{{ loop.index }}. {{ c | upper }} {{ n }}{% endfor %}{{ q[0] }}{{ range(3) | length }}',
    );
    expect(templateVariables(loops).sort()).toEqual(['choices', 'q']);
    // until may be one string.
    writeFileSync(
      `${dir}/gen.json`,
      JSON.stringify({
        ...base,
        task: 'chk_gen',
        output_type: 'generate_until',
        doc_to_choice: undefined,
        doc_to_target: '{{ choices[label] }}',
        generation_kwargs: { until: '\n' },
      }),
    );
    expect((await loadTaskConfig(`${dir}/gen.json`)).generation!.until).toEqual(['\n']);
    // A config may not silently take a built-in's name; asked to, it may.
    writeFileSync(`${dir}/arc.json`, JSON.stringify({ ...base, task: 'arc_easy' }));
    const registry = { ...TASKS };
    await expect(registerTaskConfig(`${dir}/arc.json`, registry)).rejects.toThrow(
      /task arc_easy already exists \(built in\)/,
    );
    writeFileSync(`${dir}/arc.json`, JSON.stringify({ ...base, task: 'arc_easy', replace_builtin: true }));
    expect(await registerTaskConfig(`${dir}/arc.json`, registry)).toBe('arc_easy');
    expect(await registerTaskConfig(`${dir}/arc.json`, registry)).toBe('arc_easy');
    // Rows render when read: with --limit 1 a bad third row is never rendered; reading it fails.
    writeFileSync(
      `${dir}/lazy.jsonl`,
      [
        '{"q": "a", "choices": ["x", "y"], "label": 0}',
        '{"q": "b", "choices": ["x", "y"], "label": 1}',
        '{"q": "c", "choices": ["x", "y"], "label": 7}',
      ].join('\n'),
    );
    writeFileSync(`${dir}/lazy.json`, JSON.stringify({ ...base, task: 'chk_lazy', test_split: 'lazy.jsonl' }));
    const lazy = await loadTaskConfig(`${dir}/lazy.json`);
    const rows = lazy.loadSplit('', 'eval');
    expect(rows).toHaveLength(3);
    expect(rows.slice(0, 2).map((d) => d.gold)).toEqual([0, 1]);
    expect(() => rows[2]).toThrow(/row 3: doc_to_target gave "7"/);
    // More shots than the pool holds (two rows, one of them the instance itself).
    writeFileSync(`${dir}/shots.json`, JSON.stringify({ ...base, task: 'chk_shots', num_fewshot: 2 }));
    const lm = new ScriptedLM(() => '');
    const err = await evaluate(lm, [`${dir}/shots.json`], {}).catch((e) => e);
    expect(err.message).toMatch(/2 few-shot examples asked, but chk_shots's few-shot pool has 1/);
    expect(err.field).toBe('--shots');
  });
});
