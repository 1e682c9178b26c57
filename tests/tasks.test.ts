// Needs ../shared/data (the benchmark and training data sets): scripts/test.mjs skips this file without it.
import { spawnSync } from 'node:child_process';
import { cpSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { evaluate, expandTasks } from '../lib/eval/evaluate.js';
import { withCot } from '../lib/eval/cot/index.js';
import { palProgram, sameAnswer } from '../lib/eval/cot/pal.js';
import { LEAST_TO_MOST_EXEMPLARS, PAL_EXEMPLARS } from '../lib/eval/tasks/gsm8k-exemplars.js';
import type { CotMode } from '../lib/eval/tasks/types.js';
import { ScriptedLM } from './helpers/scripted.js';
import { choiceRequests } from '../lib/eval/methods/choice.js';
import { fewshotPrefix, instanceQuery, preamble } from '../lib/eval/methods/prompt.js';
import { parsePythonStringList } from '../lib/eval/tasks/simple-choice.js';
import { GROUPS, TASKS } from '../lib/eval/tasks/index.js';
import { SHARED_DATA, llmboxErrorOf, tmp } from './helpers/models.js';

const DATA = SHARED_DATA;
const load = (name: string, split: 'eval' | 'fewshot' = 'eval') =>
  TASKS[name].loadSplit(`${DATA}/${TASKS[name].dataFolder}`, split);
const total = (group: string) => GROUPS[group].tasks.reduce((a, t) => a + load(t).length, 0);

describe('datasets', () => {
  it('loads every registered task with the published sizes', () => {
    const sizes: Record<string, number> = {
      arc_easy: 2376,
      arc_challenge: 1172,
      hellaswag: 10042,
      boolq: 3270,
      piqa: 1838,
      winogrande: 1267,
      openbookqa: 500,
      lambada: 5153,
      crows_pairs: 1508,
      halueval: 4507,
      truthfulqa_mc1: 817,
      truthfulqa_mc2: 817,
      truthfulqa_gen: 817,
      gsm8k: 1319,
      math: 5000,
      triviaqa: 3000,
      nq_open: 3610,
      humaneval: 164,
      mbpp: 500,
    };
    for (const [name, n] of Object.entries(sizes)) expect([name, load(name).length]).toEqual([name, n]);
    expect(GROUPS.mmlu.tasks).toHaveLength(57);
    expect(total('mmlu')).toBe(14042);
    expect(GROUPS.bbh.tasks).toHaveLength(27);
    expect(total('bbh')).toBe(6511);
    expect(total('mgsm')).toBe(2750);
    for (const t of GROUPS.flores200.tasks) expect(load(t).length).toBe(997);
  });

  it('formats MMLU as lm-eval: subject header, 5 dev examples in order, lettered options, " A".." D"', () => {
    const task = TASKS.mmlu_anatomy;
    const doc = load('mmlu_anatomy')[0];
    const dev = load('mmlu_anatomy', 'fewshot');
    expect(dev).toHaveLength(5);
    const prefix = fewshotPrefix(task, 'prob', doc, dev);
    expect(prefix.startsWith('The following are multiple choice questions (with answers) about anatomy.\n\n')).toBe(
      true,
    );
    expect(prefix.split('\n\n')).toHaveLength(7);
    const pre = preamble(task, 'prob', doc, dev);
    expect(pre.text).toBe(prefix);
    const reqs = choiceRequests(task, 'prob', doc, pre);
    expect(reqs.map((r) => r.continuation)).toEqual([' A', ' B', ' C', ' D']);
    expect(reqs[0].context).toBe(prefix + instanceQuery(task, 'prob', doc));
    // For chat models: the header as the system turn, each dev example as a user/assistant exchange.
    expect(reqs[0].messages!.map((m) => m.role)).toEqual([
      'system',
      ...Array(5).fill(['user', 'assistant']).flat(),
      'user',
    ]);
    expect(reqs[0].messages![2]).toEqual({ role: 'assistant', content: 'ABCD'[dev[0].gold!] });
    expect(reqs[0].messages!.at(-1)!.content).toBe(instanceQuery(task, 'prob', doc));
    expect(instanceQuery(task, 'prob', doc)).toBe(
      'A lesion causing compression of the facial nerve at the stylomastoid foramen will cause ipsilateral\n' +
        'A. paralysis of the facial muscles.\nB. paralysis of the facial muscles and loss of taste.\n' +
        'C. paralysis of the facial muscles, loss of taste and lacrimation.\n' +
        'D. paralysis of the facial muscles, loss of taste, lacrimation and decreased salivation.\nAnswer:',
    );
    expect(doc.gold).toBe(0);
    // each dev example ends with its answer letter
    expect(prefix).toMatch(/\nAnswer: [ABCD]\n\n$/);
  });

  it('formats GSM8K 8-shot with the first eight training solutions, the same for every instance', () => {
    const [a, b] = load('gsm8k');
    const train = load('gsm8k', 'fewshot');
    const pa = fewshotPrefix(TASKS.gsm8k, 'gen', a, train.slice(0, 8));
    expect(pa).toBe(fewshotPrefix(TASKS.gsm8k, 'gen', b, train.slice(0, 8)));
    expect(pa.startsWith(`Question: ${'Natalia sold clips'}`)).toBe(true);
    expect(pa.match(/\n#### \d+\n\n/g)).toHaveLength(8);
    expect(a.references).toEqual(['18']);
  });

  it('gives BBH its chain-of-thought prompt file and "Let\'s think step by step."', () => {
    const doc = load('bbh_date_understanding')[0];
    const prefix = fewshotPrefix(TASKS.bbh_date_understanding, 'gen', doc, []);
    expect(prefix.startsWith('Infer the date from context.\n\nQ: Today is Christmas Eve of 1937.')).toBe(true);
    expect(prefix.match(/A: Let's think step by step\./g)).toHaveLength(3);
    expect(doc.query.endsWith("\nA: Let's think step by step.")).toBe(true);
    expect(doc.references).toEqual(['(B)']);
  });

  it('scores Winogrande by partial scoring: option contexts, one shared continuation', () => {
    const doc = load('winogrande')[0];
    const reqs = choiceRequests(TASKS.winogrande, 'ppl', doc, { text: '', turns: [] });
    expect(reqs.map((r) => r.context)).toEqual([
      'Sarah was a much better surgeon than Maria so Sarah',
      'Sarah was a much better surgeon than Maria so Maria',
    ]);
    expect(new Set(reqs.map((r) => r.continuation))).toEqual(new Set([' always got the easier cases.']));
    expect(doc.gold).toBe(1);
  });

  it('formats BoolQ, PIQA and MBPP as lm-eval', () => {
    const bq = load('boolq')[0];
    expect(bq.query).toMatch(
      /^All biomass goes through[\s\S]*\nQuestion: does ethanol take more energy make that produces\?\nAnswer:$/,
    );
    expect(bq.choices).toEqual(['no', 'yes']);
    const pq = load('piqa')[0];
    expect(pq.query).toBe("Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:");
    expect(pq.choices).toHaveLength(2);
    expect(parsePythonStringList(`['it\\'s', "say \\"hi\\"", 'a, b']`)).toEqual(["it's", 'say "hi"', 'a, b']);
    const shots = load('mbpp', 'fewshot');
    expect(shots.map((d) => d.id)).toEqual(['mbpp-2', 'mbpp-3', 'mbpp-4']);
    const m = load('mbpp')[0];
    expect(m.id).toBe('mbpp-11');
    expect(m.query).toMatch(
      /^You are an expert Python programmer, and here is your task: [\s\S]* Your code should pass these tests:\n\nassert [\s\S]*\n\[BEGIN\]\n$/,
    );
  });

  it('expands groups and rejects unknown names with the way to list tasks', () => {
    expect(expandTasks(['mmlu']).length).toBe(57);
    expect(expandTasks(['truthfulqa', 'arc_easy'])).toEqual([
      'truthfulqa_mc1',
      'truthfulqa_mc2',
      'truthfulqa_gen',
      'arc_easy',
    ]);
    expect(() => expandTasks(['mmlu_nope'])).toThrow(/unknown task mmlu_nope/);
  });

  it('names the file, row and field of bad data, and the folder to fix for missing files', () => {
    const dir = tmp();
    cpSync(`${DATA}/mmlu/dev`, `${dir}/dev`, { recursive: true });
    writeFileSync(`${dir}/dev/anatomy_dev.csv`, 'question,choice0,choice1,choice2,choice3,answer\nQ?,a,b,c,d,7\n');
    expect(() => TASKS.mmlu_anatomy.loadSplit(dir, 'fewshot')).toThrow(/row 1: answer 7 is not 0-3/);
    const err = llmboxErrorOf(() => TASKS.gsm8k.loadSplit(dir, 'eval'));
    expect(err.file).toBe(`${dir}/test.jsonl`);
    expect(err.fix).toMatch(/--data-dir/);
    writeFileSync(`${dir}/test.jsonl`, '{"question": "q", "answer": "no final line"}\n');
    expect(() => TASKS.gsm8k.loadSplit(dir, 'eval')).toThrow(/row 1: field answer has no "#### N"/);
  });
});

describe('chain-of-thought modes on the real data', () => {
  const gsm = (mode: CotMode, split: 'eval' | 'fewshot' = 'eval') =>
    withCot(TASKS.gsm8k, mode).loadSplit(`${DATA}/gsm8k`, split);

  it("runs every PAL exemplar program to its training row's answer", async () => {
    const train = load('gsm8k', 'fewshot');
    for (const e of PAL_EXEMPLARS) {
      const r = spawnSync('python3', ['-c', palProgram(e.body)], { encoding: 'utf8' });
      expect(sameAnswer(r.stdout.trim(), train[e.row].references![0]), `row ${e.row}: ${r.stdout}${r.stderr}`).toBe(
        true,
      );
    }
    for (const e of LEAST_TO_MOST_EXEMPLARS)
      expect(e.final.endsWith(`The answer is ${train[e.row].references![0]}.`)).toBe(true);
  });

  it('builds the prompts of each GSM8K mode', () => {
    const pal = gsm('pal');
    const prompt = pal[0].extra!.prompt as string;
    expect(prompt.match(/\ndef solution\(\):\n/g)).toHaveLength(8);
    expect(prompt.startsWith('Question: Natalia sold clips')).toBe(true);
    expect(pal[0].query.endsWith('\n\ndef solution():\n')).toBe(true);
    const l2m = gsm('least-to-most');
    expect(l2m[0].extra!.prompt as string).toMatch(
      /^Q: Natalia sold clips[^\n]*\nA: To answer the question "How many clips did Natalia sell altogether in April and May\?", we need to know: "How many clips did Natalia sell in May\?"\.\n\n/,
    );
    expect((l2m[0].extra!.solvePrefix as string).match(/^Problem: /gm)).toHaveLength(4);
    expect(l2m[0].query).toMatch(/we need to know:$/);
    const direct = gsm('none', 'fewshot');
    expect(direct[0].target).toBe('72');
    expect(withCot(TASKS.gsm8k, 'none').defaultShots).toBe(8);
  });

  it('scores PAL by running what the model wrote: right programs count, wrong and broken ones do not', async () => {
    const answers = new Map(
      load('gsm8k').map((d) => [d.query.slice('Question: '.length, -'\nAnswer:'.length), d.references![0]]),
    );
    let call = 0;
    const lm = new ScriptedLM((r) => {
      const q = /Question: ([^\n]*)\n\ndef solution\(\):\n$/.exec(r.context)![1];
      const body = [`    return ${answers.get(q)}`, `    return ${answers.get(q)} + 1`, '    return undefined_name'];
      return body[call++ % 3] + '\n\n\n';
    });
    const run = await evaluate(lm, ['gsm8k'], { limit: 6, cot: 'pal', dataDir: DATA });
    const r = run.results[0];
    expect(r.cot).toBe('pal');
    expect(r.samples.map((s) => s.metrics['exact_match,pal'])).toEqual([1, 0, 0, 1, 0, 0]);
    expect(r.samples[2].filtered_resps).toEqual(['[error]']);
    expect(run.fingerprint.sandbox).toMatch(/bubblewrap|none/);
    expect(run.fingerprint.tasks.gsm8k.cot).toBe('pal');
  }, 60_000);

  it('answers BBH directly under --cot none', () => {
    const [doc] = withCot(TASKS.bbh_date_understanding, 'none').loadSplit(`${DATA}/bbh`, 'eval');
    expect(doc.query.endsWith('\nA:')).toBe(true);
    const prompt = doc.extra!.prompt as string;
    expect(prompt).not.toMatch(/step by step/);
    expect(prompt.match(/\nA: \([A-F]\)\n/g)).toHaveLength(3);
  });
});

describe('the rest of the catalogue', () => {
  const loaded = async (name: string) => {
    const dir = `${DATA}/${TASKS[name].dataFolder}`;
    await TASKS[name].prepare?.(dir);
    return TASKS[name].loadSplit(dir, 'eval');
  };

  it('loads each new task with its published size', async () => {
    const sizes: Record<string, number> = {
      rte: 277,
      qnli: 5463,
      sst2: 872,
      commonsense_qa: 1221,
      webquestions: 2032,
      wsc: 104,
      wsc273: 273,
      wikitext2: 62,
      math500: 500,
      agieval_math: 1000,
      agieval_gaokao_mathcloze: 118,
    };
    for (const [name, n] of Object.entries(sizes)) expect([name, (await loaded(name)).length]).toEqual([name, n]);
    const groupSize = async (g: string) => {
      let n = 0;
      for (const t of GROUPS[g].tasks) n += (await loaded(t)).length;
      return n;
    };
    expect(await groupSize('xcopa')).toBe(5500);
    expect(await groupSize('agieval_en')).toBe(1895);
    // Gaokao: 2,072 in 9 files (8 multiple choice and the math cloze)
    expect(await groupSize('agieval_zh')).toBe(2072);
  });

  it('formats each in its reference prompt', async () => {
    expect((await loaded('rte'))[0]).toMatchObject({
      query:
        'Dana Reeve, the widow of the actor Christopher Reeve, has died of lung cancer at age 44, according to the Christopher Reeve Foundation.\nQuestion: Christopher Reeve had an accident. True or False?\nAnswer:',
      choices: ['True', 'False'],
      gold: 1,
    });
    expect((await loaded('xcopa_it'))[0]).toMatchObject({
      query: "L'oggetto era incartato nella plastica bollata perché",
      choices: ['era delicato.', 'era piccolo.'],
      gold: 0,
    });
    // Thai premises have no final punctuation to drop.
    expect((await loaded('xcopa_th'))[0].query).toBe('สิ่งของถูกห่อไว้ในพลาสติก ดังนั้น');
    const cqa = (await loaded('commonsense_qa'))[1];
    expect(cqa.choices![cqa.gold!]).toBe('complete job');
    expect((await loaded('webquestions'))[0].references).toEqual([
      'Jamaican Creole English Language',
      'Jamaican English',
    ]);
    const wsc = (await loaded('wsc'))[0];
    expect(wsc.query).toMatch(
      /could take his claim away from \*him\*\.\nQuestion: In the passage above, does the pronoun "\*him\*" refer to "\*anyone\*"\?\nAnswer:$/,
    );
    expect(wsc.gold).toBe(0);
    const aqua = (await loaded('agieval_aqua_rat'))[0];
    expect(aqua.query).toMatch(
      /^Q: A car is being driven.* Answer Choices: \(A\)5\(√3 \+ 1\) \(B\).*\nA: Among A through E, the answer is$/s,
    );
    expect((await loaded('agieval_gaokao_biology'))[0].query).toMatch(
      /^问题：.* 选项：\(A\).*\n答案：从A到D, 我们应选择$/s,
    );
    expect(
      (await loaded('wikitext2'))[0].query.startsWith('= Robert Boulter =\n Robert Boulter is an English film'),
    ).toBe(true);
  });

  it('counts a Gaokao answer right when it is any of the correct options', () => {
    const docs = load('agieval_gaokao_physics');
    const multi = docs.find((d) => (d.extra!.golds as number[]).length > 1)!;
    const golds = multi.extra!.golds as number[];
    const logprobs = [0, 1, 2, 3].map((j) => (j === golds[1] ? 0 : -5));
    const m = TASKS.agieval_gaokao_physics.choiceMetrics!({ logprobs, isGreedy: [], tokens: [1, 1, 1, 1] }, multi);
    expect(m.acc).toBe(1);
  });
});

describe('IFEval on its data', () => {
  it('reads the 541 prompts and their 834 instructions, and scores a response written to follow the first', async () => {
    const docs = load('ifeval');
    expect(docs).toHaveLength(541);
    const count = docs.reduce((a, d) => a + (d.extra!.instructions as unknown[]).length, 0);
    expect(count).toBe(834);
    // Prompt 1000: no commas, at least 3 highlighted sections, at least 300 words.
    const body = Array.from(
      { length: 3 },
      (_, i) => `*Section ${i + 1}*\n${'Raymond ruled Tripoli well and long. '.repeat(20)}`,
    );
    const good = body.join('\n\n');
    const s = await TASKS.ifeval.generation!.score(good, docs[0]);
    expect(s).toMatchObject({ prompt_level_strict_acc: 1, inst_level_strict_acc: 1 });
    const withComma = await TASKS.ifeval.generation!.score(good.replace('well and', 'well, and'), docs[0]);
    expect(withComma.prompt_level_strict_acc).toBe(0);
    expect(withComma.inst_level_strict_acc).toBeCloseTo(2 / 3, 12);
  });
});

describe('MMLU categories', () => {
  it('splits the 57 subjects into STEM, humanities, social sciences and other (19/13/12/13), covering all 14,042 questions', () => {
    const groups = ['mmlu_stem', 'mmlu_humanities', 'mmlu_social_sciences', 'mmlu_other'];
    expect(groups.map((g) => GROUPS[g].tasks.length)).toEqual([19, 13, 12, 13]);
    expect(new Set(groups.flatMap((g) => GROUPS[g].tasks)).size).toBe(57);
    expect(groups.reduce((a, g) => a + total(g), 0)).toBe(14042);
    expect(GROUPS.mmlu_stem.tasks).toContain('mmlu_high_school_statistics');
    expect(GROUPS.mmlu_humanities.tasks).toContain('mmlu_professional_law');
  });
});

describe('LLM-as-judge data', () => {
  it("loads MT-Bench's 80 questions with FastChat's judge prompts and GPT-4's 30 references", () => {
    const mt = load('mt_bench');
    expect(mt).toHaveLength(80);
    expect(load('vicuna_bench')).toHaveLength(80);
    expect(load('mt_bench_pairwise')).toHaveLength(30);
    const prompts = mt[0].extra!.prompts as Map<string, { prompt_template: string }>;
    for (const name of ['single-v1', 'single-math-v1', 'single-v1-multi-turn', 'single-math-v1-multi-turn', 'pair-v2'])
      expect(prompts.has(name), name).toBe(true);
    expect(prompts.get('single-v1')!.prompt_template).toContain('{answer}');
    const math = mt.filter((d) => d.extra!.category === 'math');
    expect(math.every((d) => Array.isArray(d.extra!.reference))).toBe(true);
  });
});

describe('Winograd-style probes', () => {
  it('reads XWinograd per language with partial scoring, and Winogender with the pronoun of each sentence', () => {
    const sizes = { en: 2325, fr: 83, jp: 959, pt: 263, ru: 315, zh: 16 };
    for (const [lang, n] of Object.entries(sizes)) expect(load(`xwinograd_${lang}`)).toHaveLength(n);
    const [first] = load('xwinograd_en');
    expect(first.query).toBe('feared violence.');
    expect(first.choiceContexts![1]).toBe(
      'The city councilmen refused the demonstrators a permit because the demonstrators',
    );
    // the tokenizer's `` '' quotes are found as the sentence's "
    expect(load('xwinograd_en').some((d) => d.query === '"Dibs!" was quicker.')).toBe(true);
    const wg = load('winogender');
    expect(wg).toHaveLength(720);
    expect(wg[3]).toMatchObject({
      query: 'The technician told someone that he could pay with cash. ‘He’ refers to the',
      choices: ['technician', 'someone'],
      gold: 1,
    });
    const m = TASKS.winogender.choiceMetrics!({ logprobs: [-1, -2], isGreedy: [], tokens: [1, 1] }, wg[1]);
    expect(m).toEqual({ acc: 0, acc_female: 0 });
  });
});
