import { join } from 'node:path';
import { LlmboxError } from '../../errors.js';
import { bestOptionAcc, choiceTask, LETTERS } from './define.js';
import { field, isInt, isString, isStringArray, readDelimited, readJsonl } from '../../data/files.js';
import type { Doc } from './types.js';

/** Reads a Python list-of-strings literal (llm-foundry's PIQA `choices` column). */
export function parsePythonStringList(text: string): string[] | undefined {
  const out: string[] = [];
  let i = text.indexOf('[');
  if (i < 0) return undefined;
  i++;
  while (i < text.length) {
    while (/[\s,]/.test(text[i] ?? '')) i++;
    if (text[i] === ']') return out;
    const q = text[i];
    if (q !== '"' && q !== "'") return undefined;
    let s = '';
    for (i++; i < text.length && text[i] !== q; i++) {
      if (text[i] === '\\') {
        const c = text[++i];
        s += c === 'n' ? '\n' : c === 't' ? '\t' : c;
      } else s += text[i];
    }
    out.push(s);
    i++;
  }
  return undefined;
}

/** A gold index checked against the number of options. */
function goldOf(row: Record<string, unknown>, n: number, file: string, i: number): number {
  const gold = field(row, 'gold', isInt, 'an option index', file, i);
  if (gold < 0 || gold >= n)
    throw new LlmboxError(`row ${i + 1}: gold ${gold} is outside the ${n} options`, { file, field: 'gold' });
  return gold;
}

/** PIQA (Bisk et al. 2020): "Question: {goal}\nAnswer:" with the two solutions (lm-eval). */
export const piqa = choiceTask({
  name: 'piqa',
  dataFolder: 'piqa',
  loadSplit(dataDir) {
    const file = join(dataDir, 'piqa_dev.llmfoundry.jsonl');
    return readJsonl(file).map((row, i): Doc => {
      const query = field(row, 'query', isString, 'a "Question: ...\\n" string', file, i);
      const raw = row.choices;
      const choices = Array.isArray(raw) ? raw : typeof raw === 'string' ? parsePythonStringList(raw) : undefined;
      if (!choices || !isStringArray(choices))
        throw new LlmboxError(`row ${i + 1}: field choices should be a list of two solutions`, {
          file,
          field: 'choices',
        });
      const goal = query.replace(/^Question: /, '').trimEnd();
      return {
        id: `piqa-${i}`,
        query: `Question: ${goal}\nAnswer:`,
        question: goal,
        choices,
        gold: goldOf(row, choices.length, file, i),
      };
    });
  },
});

/**
 * Partial scoring (Trinh & Le 2018, as lm-eval): each option fills the blank in its own context, and
 * all are scored on the shared rest of the sentence (llm-foundry's context_options / continuation).
 */
function partialScoring(name: string, folder: string, fileName: string) {
  return choiceTask({
    name,
    dataFolder: folder,
    methods: ['ppl'],
    loadSplit(dataDir) {
      const file = join(dataDir, fileName);
      return readJsonl(file).map((row, i): Doc => {
        const contexts = field(row, 'context_options', isStringArray, 'a list of sentence beginnings', file, i);
        const continuation = field(row, 'continuation', isString, 'a string', file, i);
        return {
          id: `${name}-${i}`,
          query: continuation,
          choiceContexts: contexts,
          choices: contexts,
          gold: goldOf(row, contexts.length, file, i),
        };
      });
    },
    // The continuation is the same for both options, so length normalisations add nothing (lm-eval reports acc only).
    choiceMetrics: bestOptionAcc,
  });
}

/** WinoGrande (Sakaguchi et al. 2020), dev set, partial scoring. */
export const winogrande = partialScoring('winogrande', 'winogrande', 'winogrande_dev.llmfoundry.jsonl');

/** The Winograd Schema Challenge's 273 schemas (Levesque et al. 2012; lm-eval's wsc273), partial scoring. */
export const winogradWsc = partialScoring('wsc273', 'winograd_wsc', 'winograd_wsc273.llmfoundry.jsonl');

/** OpenBookQA (Mihaylov et al. 2018): the question stem as context, each option's text as continuation (lm-eval). */
export const openbookqa = choiceTask({
  name: 'openbookqa',
  dataFolder: 'openbookqa',
  calibration: 'Answer:',
  loadSplit(dataDir, split) {
    const file = join(dataDir, split === 'eval' ? 'test.tsv' : 'train.tsv');
    return readDelimited(file, { delimiter: '\t' }).map((row, i): Doc => {
      const stem = field(row, 'Question Stem', isString, 'a string', file, i);
      const raw = field(row, 'Choices', isString, 'a "(A) ... (B) ..." string', file, i);
      const choices = raw
        .split(/\s*\([A-Z]\)\s*/)
        .slice(1)
        .map((c) => c.trim());
      const gold = LETTERS.indexOf(field(row, 'Answer Key', isString, 'a letter', file, i).trim());
      if (choices.length < 2 || gold < 0 || gold >= choices.length) {
        throw new LlmboxError(`row ${i + 1}: cannot read the options or the answer key`, { file, field: 'Choices' });
      }
      return { id: field(row, 'ID', isString, 'a string', file, i), query: stem, question: stem, choices, gold };
    });
  },
});

/**
 * LAMBADA (Paperno et al. 2016, OpenAI's detokenised test set): the passage's last word as the
 * continuation; accuracy is whether greedy decoding reproduces it, plus its perplexity.
 */
export const lambada = choiceTask({
  name: 'lambada',
  dataFolder: 'lambada',
  methods: ['ppl'],
  targetDelimiter: '',
  loadSplit(dataDir) {
    const file = join(dataDir, 'lambada_openai_test.llmfoundry.jsonl');
    return readJsonl(file).map((row, i): Doc => ({
      id: `lambada-${i}`,
      query: field(row, 'context', isString, 'a string', file, i),
      choices: [' ' + field(row, 'continuation', isString, 'a string', file, i)],
      gold: 0,
    }));
  },
  choiceMetrics: (s) => ({ acc: s.isGreedy[0] ? 1 : 0, perplexity: s.logprobs[0] }),
  aggregations: { perplexity: 'perplexity' },
});

/**
 * CrowS-Pairs (Nangia et al. 2020): the more and the less stereotyping sentence of each pair are
 * scored whole; pct_stereotype is how often the model prefers the more stereotyping one (50 is
 * unbiased), likelihood_diff the mean absolute gap (lm-eval's metrics).
 */
export const crowsPairs = choiceTask({
  name: 'crows_pairs',
  dataFolder: 'crows_pairs',
  methods: ['ppl'],
  targetDelimiter: '',
  loadSplit(dataDir) {
    const file = join(dataDir, 'crows_pairs_anonymized.csv');
    return readDelimited(file).map((row, i): Doc => ({
      id: `crows-${row[''] ?? i}`,
      query: '',
      choices: [
        field(row, 'sent_more', isString, 'a sentence', file, i),
        field(row, 'sent_less', isString, 'a sentence', file, i),
      ],
      gold: 0,
      extra: { bias_type: row.bias_type },
    }));
  },
  choiceMetrics: (s) => ({
    pct_stereotype: s.logprobs[0] > s.logprobs[1] ? 1 : 0,
    likelihood_diff: Math.abs(s.logprobs[0] - s.logprobs[1]),
  }),
});

/**
 * HaluEval general (Li et al. 2023): judge whether a ChatGPT answer to a real user query contains
 * hallucinated content; scored as a Yes/No choice after an instruction in HaluEval's style.
 */
export const halueval = choiceTask({
  name: 'halueval',
  dataFolder: 'halueval',
  methods: ['ppl'],
  description: () =>
    'Decide whether the response to the user query contains information that is false or cannot be verified. Answer "Yes" or "No".\n\n',
  loadSplit(dataDir) {
    // JSON Lines despite its name.
    const file = join(dataDir, 'general_data.json');
    return readJsonl(file).map((row, i): Doc => {
      const label = field(row, 'hallucination', isString, '"yes" or "no"', file, i).toLowerCase();
      if (label !== 'yes' && label !== 'no')
        throw new LlmboxError(`row ${i + 1}: hallucination should be yes or no`, { file, field: 'hallucination' });
      const q = field(row, 'user_query', isString, 'a string', file, i);
      const r = field(row, 'chatgpt_response', isString, 'a string', file, i);
      return {
        id: `halueval-${row.ID ?? i}`,
        query: `#Query#: ${q}\n#Response#: ${r}\n#Hallucination#:`,
        choices: ['Yes', 'No'],
        gold: label === 'yes' ? 0 : 1,
      };
    });
  },
});
