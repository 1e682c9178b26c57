import { join } from 'node:path';
import { LlmboxError } from '../../errors.js';
import { bestOptionAcc, choiceTask } from './define.js';
import { readDelimited } from '../../data/files.js';
import type { Doc, Task, TaskGroup } from './types.js';

export const XWINOGRAD_LANGUAGES = ['en', 'fr', 'jp', 'pt', 'ru', 'zh'];

type Span = [string, [number, number], string[]];
type Candidate = [string, [number, number], string[], boolean];

/**
 * Where each token starts and ends in the sentence (tokens appear in order: "does", "n't" in
 * "doesn't"; the tokenizer's `` and '' are the sentence's "); -1 for a token not found.
 */
function tokenSpans(sentence: string, tokens: string[]): [number, number][] {
  let at = 0;
  return tokens.map((t) => {
    for (const form of t === '``' || t === "''" ? [t, '"', '“', '”'] : [t]) {
      const i = sentence.indexOf(form, at);
      if (i >= 0) {
        at = i + form.length;
        return [i, at];
      }
    }
    return [-1, -1];
  });
}

/**
 * XWinograd (Tikhonov & Ryabinin 2021): Winograd schemas in six languages, scored as lm-eval does
 * with partial scoring: each candidate replaces the pronoun, and both are scored on the rest of
 * the sentence (after lm-eval's " " delimiter, in every language).
 */
function xwinogradTask(lang: string): Task {
  return choiceTask({
    name: `xwinograd_${lang}`,
    dataFolder: 'xwinograd',
    methods: ['ppl'],
    loadSplit(dataDir) {
      const file = join(dataDir, 'dataset.tsv');
      const rows = readDelimited(file, { delimiter: '\t', header: false });
      const docs: Doc[] = [];
      rows.forEach((row, i) => {
        if (row['0'] !== lang) return;
        const bad = (what: string) => new LlmboxError(`row ${i + 1}: ${what}`, { file });
        const sentence = String(row['3']);
        let tokens: string[], pronoun: Span, candidates: Candidate[];
        try {
          tokens = JSON.parse(String(row['4']));
          pronoun = JSON.parse(String(row['5']));
          candidates = JSON.parse(String(row['6']));
        } catch {
          throw bad('columns 5-7 should hold the tokens, the pronoun and the candidates as JSON');
        }
        const spans = tokenSpans(sentence, tokens);
        const [start, end] = pronoun[1];
        const cut = spans[start]?.[0] ?? -1,
          after = spans[end - 1]?.[1] ?? -1;
        if (cut < 0 || after < 0) throw bad(`the pronoun ${JSON.stringify(pronoun[0])} is not found in the sentence`);
        const rest = sentence.slice(after).trim();
        const gold = candidates.findIndex((c) => c[3] === true);
        if (gold < 0) throw bad('no candidate is marked correct');
        const contexts = candidates.map((c) => sentence.slice(0, cut) + c[0]);
        docs.push({
          id: `xwinograd-${lang}-${docs.length}`,
          query: rest,
          choiceContexts: contexts,
          choices: contexts,
          gold,
        });
      });
      return docs;
    },
    choiceMetrics: bestOptionAcc,
  });
}

export const xwinogradTasks = XWINOGRAD_LANGUAGES.map(xwinogradTask);
export const xwinogradGroup: TaskGroup = {
  name: 'xwinograd',
  tasks: xwinogradTasks.map((t) => t.name),
  aggregate: 'macro',
};

const PRONOUNS: Record<string, Record<string, string>> = {
  male: { NOM: 'he', POSS: 'his', ACC: 'him' },
  female: { NOM: 'she', POSS: 'her', ACC: 'her' },
  neutral: { NOM: 'they', POSS: 'their', ACC: 'them' },
};

/**
 * Winogender (Rudinger et al. 2018): 720 sentences where a pronoun refers to an occupation or to
 * another participant, in lm-eval's format: the sentence, then "‘He’ refers to the" and the two
 * candidates as continuations. Reported overall and by the pronoun's gender (acc_male, acc_female,
 * acc_neutral), whose gaps are the bias measure.
 */
export const winogender = choiceTask({
  name: 'winogender',
  dataFolder: 'winogender',
  methods: ['ppl'],
  loadSplit(dataDir) {
    const file = join(dataDir, 'all_sentences.tsv');
    const templates = join(dataDir, 'templates.tsv');
    const byKey = new Map<string, string>();
    // One template per occupation and answer; the "someone" sentences use it with someone as the participant.
    for (const t of readDelimited(templates, { delimiter: '\t' }))
      byKey.set(`${t['occupation(0)']}.${t.answer}`, String(t.sentence));
    return readDelimited(file, { delimiter: '\t' }).map((row, i): Doc => {
      const id = String(row.sentid);
      const [occupation, participant, answer, gender] = id.split('.');
      const template = byKey.get(`${occupation}.${answer}`);
      const slot = template && /\$(NOM|POSS|ACC)_PRONOUN/.exec(template)?.[1];
      if (!slot || !PRONOUNS[gender])
        throw new LlmboxError(`row ${i + 1}: no template for ${id}`, { file, fix: `check ${templates}` });
      const pronoun = PRONOUNS[gender][slot];
      const sentence = String(row.sentence);
      return {
        id: `winogender-${id}`,
        query: `${sentence} ‘${pronoun[0].toUpperCase()}${pronoun.slice(1)}’ refers to the`,
        choices: [occupation, participant],
        gold: Number(answer),
        extra: { gender },
      };
    });
  },
  choiceMetrics: (s, doc) => {
    const { acc } = bestOptionAcc(s, doc);
    return { acc, [`acc_${doc.extra!.gender}`]: acc };
  },
});
