import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { evaluate, registerConfigs } from '../lib/eval/evaluate.js';
import { configTasks, loadTaskConfig, readTaskConfig } from '../lib/eval/tasks/declarative.js';
import { GROUPS, TASKS } from '../lib/eval/tasks/index.js';
import type { LoglikelihoodRequest } from '../lib/eval/lm.js';
import { LlmboxError } from '../lib/errors.js';
import { tmp } from './helpers/models.js';
import { ScriptedLM } from './helpers/scripted.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const rows = (rs: object[]) => rs.map((r) => JSON.stringify(r)).join('\n') + '\n';

describe('YAML task configs with include, expressions and data folders', () => {
  it('reads YAML, merges an included base (its file paths kept relative to it) and refuses cycles', () => {
    const dir = tmp('llmbox-cfg-');
    mkdirSync(join(dir, 'base'));
    writeFileSync(
      join(dir, 'base', '_common.yaml'),
      'test_split: data.jsonl\noutput_type: multiple_choice\ndoc_to_choice: ["no", "yes"]\ndoc_to_target: "{{ label }}"\ngeneration_kwargs: {until: ["\\n"]}\n',
    );
    writeFileSync(join(dir, 'child.yaml'), 'include: base/_common.yaml\ntask: child\ndoc_to_text: "{{ q }}"\n');
    const cfg = readTaskConfig(join(dir, 'child.yaml'));
    expect(cfg).toMatchObject({ task: 'child', test_split: 'base/data.jsonl', doc_to_choice: ['no', 'yes'] });
    expect(cfg).not.toHaveProperty('include');
    writeFileSync(join(dir, 'a.yaml'), 'include: b.yaml\ntask: a\n');
    writeFileSync(join(dir, 'b.yaml'), 'include: a.yaml\ntask: b\n');
    expect(() => readTaskConfig(join(dir, 'a.yaml'))).toThrow(/include cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml/);
    writeFileSync(join(dir, 'bad.yaml'), 'task: [unclosed\n');
    const e = (() => {
      try {
        readTaskConfig(join(dir, 'bad.yaml'));
      } catch (err) {
        return err as LlmboxError;
      }
    })();
    expect(e).toBeInstanceOf(LlmboxError);
    expect(e!.message).toMatch(/cannot parse the config/);
  });

  it('evaluates list expressions for choices and targets, operators included, and scores with calibration', async () => {
    const dir = tmp('llmbox-cfg-');
    writeFileSync(
      join(dir, 'd.jsonl'),
      rows([
        {
          premise: 'It rained.',
          question: 'effect',
          c1: 'We got wet.',
          c2: 'We sang.',
          label: 0,
          aliases: ['wet', 'soaked'],
        },
        { premise: 'ฝนตก', question: 'cause', c1: 'Clouds came.', c2: 'Sun shone.', label: 0, aliases: ['clouds'] },
      ]),
    );
    writeFileSync(
      join(dir, 'mc.yaml'),
      [
        'task: cfg_mc',
        'test_split: d.jsonl',
        'output_type: multiple_choice',
        `doc_to_text: "{{ premise.strip()[:-1] if premise.strip()[-1] in '.!?' else premise.strip() }} {{ {'cause': 'because', 'effect': 'so'}[question] }}"`,
        'doc_to_choice: "{{ [c1[0].lower() + c1[1:], c2[0].lower() + c2[1:]] }}"',
        'doc_to_target: "{{ label }}"',
        'calibration: "Answer:"',
      ].join('\n'),
    );
    const task = await loadTaskConfig(join(dir, 'mc.yaml'));
    const docs = task.loadSplit('.', 'eval');
    expect(docs.map((d) => d.query)).toEqual(['It rained so', 'ฝนตก because']);
    expect(docs[0].choices).toEqual(['we got wet.', 'we sang.']);
    expect(task.calibration).toBe('Answer:');
    // The model prefers "we sang." everywhere, but after "Answer:" even more: calibrated, "we got wet." wins.
    const ll = (r: LoglikelihoodRequest) => {
      const sang = r.continuation.includes('sang') || r.continuation.includes('sun');
      return r.context === 'Answer:' ? (sang ? -1 : -9) : sang ? -2 : -3;
    };
    TASKS.cfg_mc = task;
    const run = await evaluate(new ScriptedLM(() => '', ll), ['cfg_mc'], {});
    expect(run.results[0].metrics.acc.value).toBe(0);
    expect(run.results[0].metrics.acc_mi.value).toBe(1);

    writeFileSync(
      join(dir, 'gen.yaml'),
      'task: cfg_gen\ntest_split: d.jsonl\noutput_type: generate_until\ndoc_to_text: "{{ premise }}"\ndoc_to_target: "{{ aliases }}"\ngeneration_kwargs: {until: ["\\n"]}\n',
    );
    const gen = await loadTaskConfig(join(dir, 'gen.yaml'));
    const [first] = gen.loadSplit('.', 'eval');
    expect(first.references).toEqual(['wet', 'soaked']);
    expect(first.target).toBe('wet');
    TASKS.cfg_gen = gen;
    const answered = await evaluate(new ScriptedLM(() => ' soaked'), ['cfg_gen'], {});
    expect(answered.results[0].samples.map((s) => s.metrics.exact_match)).toEqual([1, 0]);
  });

  it('reads dataset_path under the data root given at evaluation, and forms groups', async () => {
    const dir = tmp('llmbox-cfg-');
    const data = join(dir, 'data', 'mine');
    mkdirSync(data, { recursive: true });
    writeFileSync(join(data, 't.jsonl'), rows([{ q: 'Is it?', label: 1 }]));
    mkdirSync(join(dir, 'configs'));
    for (const name of ['g_one', 'g_two'])
      writeFileSync(
        join(dir, 'configs', `${name}.yaml`),
        `task: ${name}\ndataset_path: mine\ntest_split: t.jsonl\noutput_type: multiple_choice\ndoc_to_text: "{{ q }}"\ndoc_to_choice: ["no", "yes"]\ndoc_to_target: "{{ label }}"\ngroup: g_both\n`,
      );
    const found = configTasks(join(dir, 'configs'));
    expect(found.tasks.map((t) => t.name)).toEqual(['g_one', 'g_two']);
    expect(found.groups).toEqual([{ name: 'g_both', tasks: ['g_one', 'g_two'], aggregate: 'macro' }]);
    // A folder given as -d registers every config in it.
    const names = await registerConfigs([join(dir, 'configs')]);
    expect(names).toEqual(['g_one', 'g_two']);
    const run = await evaluate(
      new ScriptedLM(
        () => '',
        (r) => (r.continuation === ' yes' ? 0 : -1),
      ),
      names,
      {
        dataDir: join(dir, 'data'),
      },
    );
    expect(run.results.map((r) => r.metrics.acc.value)).toEqual([1, 1]);
    const err = await evaluate(new ScriptedLM(() => ''), ['g_one'], { dataDir: join(dir, 'nowhere') }).catch((e) => e);
    expect(err).toBeInstanceOf(LlmboxError);
    expect(err.file).toBe(join(dir, 'nowhere', 'mine', 't.jsonl'));
  });
});

describe('the configs shipped in tasks/', () => {
  it('are built-in tasks, with their groups', () => {
    const files = readdirSync(join(ROOT, 'tasks'), { recursive: true }) as string[];
    const configs = files.filter((f) => f.endsWith('.yaml') && !f.split('/').pop()!.startsWith('_'));
    expect(configs.length).toBeGreaterThanOrEqual(16);
    for (const name of ['rte', 'qnli', 'sst2', 'commonsense_qa', 'webquestions', 'xcopa_it'])
      expect(TASKS[name]).toBeDefined();
    expect(GROUPS.xcopa.tasks).toHaveLength(11);
  });

  it('llmbox tasks lists them and llmbox eval refuses an unknown folder entry by name', () => {
    const bin = join(ROOT, 'bin', 'llmbox.js');
    const list = spawnSync(process.execPath, [bin, 'tasks', '--json'], { encoding: 'utf8' });
    const tasks = JSON.parse(list.stdout) as { name: string; group: string | null }[];
    expect(tasks.find((t) => t.name === 'xcopa_sw')?.group).toBe('xcopa');
    const dir = tmp('llmbox-cfg-empty-');
    const r = spawnSync(process.execPath, [bin, 'eval', '-m', 'stories260K', '-d', dir], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/no task configs/);
  });
});
