import { join } from 'node:path';
import { LlmboxError } from '../../errors.js';
import type { Message } from '../../data/records.js';
import { readJsonl } from '../../data/files.js';
import { chatTurn, judgeCache } from '../judge/ask.js';
import { combineOrders, fillTemplate, parseRating, parseVerdict } from '../judge/verdicts.js';
import type { LanguageModel } from '../lm.js';
import { generationTask } from './define.js';
import type { Doc, GenerationSpec, ScoreContext, Task } from './types.js';

interface JudgePrompt {
  name: string;
  system_prompt: string;
  prompt_template: string;
}

/** FastChat's sampling temperature per category for the answers (0: greedy). */
const TEMPERATURE: Record<string, number> = {
  writing: 0.7,
  roleplay: 0.7,
  extraction: 0,
  math: 0,
  coding: 0,
  reasoning: 0,
  stem: 0.1,
  humanities: 0.1,
};
/** Categories judged against the reference answer (FastChat's NEED_REF_CATS). */
const NEEDS_REFERENCE = new Set(['math', 'reasoning', 'coding']);
const ANSWER_TOKENS = 1024;
const JUDGE_TOKENS = 2048;

function judgePrompts(dataDir: string): Map<string, JudgePrompt> {
  const file = join(dataDir, 'judge_prompts.jsonl');
  return new Map(readJsonl(file).map((r) => [String(r.name), r as unknown as JudgePrompt]));
}

function questions(dataDir: string, file: string, name: string): Doc[] {
  const path = join(dataDir, file);
  const refs = new Map(
    readJsonl(join(dataDir, 'reference_answer_gpt-4.jsonl')).map((r) => [
      r.question_id,
      ((r.choices as { turns: string[] }[])[0]?.turns ?? []) as string[],
    ]),
  );
  const prompts = judgePrompts(dataDir);
  return readJsonl(path).map((r, i): Doc => {
    const turns = r.turns as string[];
    if (!Array.isArray(turns) || !turns.length || !turns.every((t) => typeof t === 'string'))
      throw new LlmboxError(`row ${i + 1}: field turns should be a list of questions`, { file: path, field: 'turns' });
    const category = String(r.category);
    return {
      id: `${name}-${r.question_id}`,
      query: turns[0],
      references: [''],
      extra: { turns, category, reference: refs.get(r.question_id), prompts },
    };
  });
}

/**
 * The model's answers to every turn, each asked with the earlier turns and answers before it (one
 * conversation per question), at the category's temperature; returned as a JSON list.
 */
const answerTurns: NonNullable<GenerationSpec['solve']> = async (lm, requests, docs) =>
  Promise.all(
    docs.map(async (d, i) => {
      const turns = d.extra!.turns as string[];
      const messages: Message[] = [];
      const answers: string[] = [];
      const temperature = TEMPERATURE[d.extra!.category as string] ?? 0.7;
      for (const [t, q] of turns.entries()) {
        messages.push({ role: 'user', content: q });
        const a = await chatTurn(lm, messages, {
          maxNewTokens: requests[i].maxNewTokens ?? ANSWER_TOKENS,
          temperature,
          seed: (requests[i].seed ?? 0) + t,
          // A long conversation loses its oldest tokens, as other prompts do (the run warns how many).
          truncate: true,
        });
        answers.push(a.trim());
        messages.push({ role: 'assistant', content: a.trim() });
      }
      return JSON.stringify(answers);
    }),
  );

const needJudge = (ctx: ScoreContext | undefined): LanguageModel => {
  if (!ctx?.judge)
    throw new LlmboxError('this task is scored by a judge model, and none is given', { field: '--judge' });
  return ctx.judge;
};

async function judge(ctx: ScoreContext | undefined, prompt: JudgePrompt, fields: Record<string, string>) {
  const j = needJudge(ctx);
  const messages: Message[] = [
    { role: 'system', content: prompt.system_prompt },
    { role: 'user', content: fillTemplate(prompt.prompt_template, fields) },
  ];
  return judgeCache(j).ask(j, messages, JUDGE_TOKENS);
}

/**
 * MT-Bench single-answer grading (Zheng et al. 2023): each turn rated 1-10 by the judge with
 * FastChat's prompts, against GPT-4's reference answer for math, reasoning and coding; a reply
 * without a rating is left out of the means (as FastChat drops rating -1) and counted.
 */
async function gradeSingle(answersJson: string, doc: Doc, ctx?: ScoreContext): Promise<Record<string, number>> {
  const answers = JSON.parse(answersJson) as string[];
  const { turns, category, reference, prompts } = doc.extra as {
    turns: string[];
    category: string;
    reference?: string[];
    prompts: Map<string, JudgePrompt>;
  };
  const withRef = NEEDS_REFERENCE.has(category) && reference !== undefined;
  const out: Record<string, number> = {};
  let failures = 0;
  const ratings: number[] = [];
  for (let t = 0; t < turns.length && t < 2; t++) {
    const name = `${withRef ? 'single-math-v1' : 'single-v1'}${t === 1 ? '-multi-turn' : ''}`;
    const fields: Record<string, string> =
      t === 0
        ? { question: turns[0], answer: answers[0] ?? '', ref_answer_1: reference?.[0] ?? '' }
        : {
            question_1: turns[0],
            question_2: turns[1],
            answer_1: answers[0] ?? '',
            answer_2: answers[1] ?? '',
            ref_answer_1: reference?.[0] ?? '',
            ref_answer_2: reference?.[1] ?? '',
          };
    const rating = parseRating(await judge(ctx, prompts.get(name)!, fields));
    if (rating < 0) failures++;
    else {
      out[`score_turn${t + 1}`] = rating;
      ratings.push(rating);
    }
  }
  if (ratings.length) {
    out.score = ratings.reduce((a, b) => a + b, 0) / ratings.length;
    out[`score_${category}`] = out.score;
  }
  out.judge_failures = failures;
  return out;
}

/**
 * Pairwise comparison with a reference answer (AlpacaEval's setting, on MT-Bench's GPT-4
 * references): the judge compares the two first-turn answers with FastChat's pair-v2 prompt, in
 * both orders; a win in both is a win, a loss in both a loss, anything else a tie. win_rate counts
 * a tie as half.
 */
async function gradePairwise(answersJson: string, doc: Doc, ctx?: ScoreContext): Promise<Record<string, number>> {
  const [answer] = JSON.parse(answersJson) as string[];
  const { turns, reference, prompts } = doc.extra as {
    turns: string[];
    reference: string[];
    prompts: Map<string, JudgePrompt>;
  };
  const prompt = prompts.get('pair-v2')!;
  const ask = (a: string, b: string) => judge(ctx, prompt, { question: turns[0], answer_a: a, answer_b: b });
  const first = parseVerdict(await ask(answer ?? '', reference[0]));
  const second = parseVerdict(await ask(reference[0], answer ?? ''));
  const result = combineOrders(first, second);
  return {
    win_rate: result === 'win' ? 1 : result === 'tie' ? 0.5 : 0,
    win: result === 'win' ? 1 : 0,
    loss: result === 'loss' ? 1 : 0,
    tie: result === 'tie' ? 1 : 0,
    judge_failures: (first === 'error' ? 1 : 0) + (second === 'error' ? 1 : 0),
  };
}

function judgedTask(name: string, load: (dataDir: string) => Doc[], score: GenerationSpec['score']): Task {
  return generationTask({
    name,
    dataFolder: 'mt_bench',
    fewshotOrder: 'first',
    loadSplit: (dataDir) => load(dataDir),
    generation: {
      until: [],
      maxNewTokens: ANSWER_TOKENS,
      filters: { none: (t) => t },
      score,
      solve: answerTurns,
      judged: true,
    },
  });
}

/** MT-Bench: 80 two-turn questions in 8 categories, graded 1-10 per turn. */
export const mtBench = judgedTask('mt_bench', (d) => questions(d, 'question.jsonl', 'mt_bench'), gradeSingle);

/** The Vicuna benchmark: 80 single-turn questions, graded 1-10 with the same prompts. */
export const vicunaBench = judgedTask(
  'vicuna_bench',
  (d) => questions(d, 'vicuna_bench_question.jsonl', 'vicuna_bench'),
  gradeSingle,
);

/** Pairwise against GPT-4's answers: the 30 MT-Bench questions that have one, first turns. */
export const mtBenchPairwise = judgedTask(
  'mt_bench_pairwise',
  (d) =>
    questions(d, 'question.jsonl', 'mt_bench_pairwise')
      .filter((q) => q.extra!.reference)
      .map((q) => ({ ...q, extra: { ...q.extra, turns: (q.extra!.turns as string[]).slice(0, 1) } })),
  gradePairwise,
);
