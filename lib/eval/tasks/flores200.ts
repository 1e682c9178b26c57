import { join } from 'node:path';
import { LlmboxError } from '../../errors.js';
import { generationTask } from './define.js';
import { readText } from '../../data/files.js';
import { corpusBleu, type BleuTokenizer } from '../metrics/index.js';
import type { Doc, Task, TaskGroup } from './types.js';

export const FLORES_LANGUAGES: Record<string, string> = {
  eng_Latn: 'English',
  fra_Latn: 'French',
  deu_Latn: 'German',
  spa_Latn: 'Spanish',
  zho_Hans: 'Chinese',
  jpn_Jpan: 'Japanese',
  rus_Cyrl: 'Russian',
  arb_Arab: 'Arabic',
  hin_Deva: 'Hindi',
  swh_Latn: 'Swahili',
};

/**
 * FLORES-200 (NLLB Team 2022) dev, one task per direction: "{Source}: {sentence}\n{Target}:" and
 * the first line generated, scored by corpus BLEU (sacrebleu's 13a; CJK targets split per
 * character). Few-shot examples are other dev sentences.
 */
export function floresTask(src: string, tgt: string): Task {
  const tokenizer: BleuTokenizer = tgt === 'zho_Hans' || tgt === 'jpn_Jpan' ? 'zh' : '13a';
  const lines = (dataDir: string, lang: string) => {
    const file = join(dataDir, 'dev', `${lang}.dev`);
    const ls = readText(file).split('\n');
    if (ls[ls.length - 1] === '') ls.pop();
    return { file, ls };
  };
  return generationTask({
    name: `flores200_${src}-${tgt}`,
    dataFolder: 'flores200',
    loadSplit(dataDir) {
      const a = lines(dataDir, src),
        b = lines(dataDir, tgt);
      if (a.ls.length !== b.ls.length)
        throw new LlmboxError(`has ${b.ls.length} lines but ${a.file} has ${a.ls.length}; the files must be aligned`, {
          file: b.file,
        });
      return a.ls.map((s, i): Doc => ({
        id: `flores-${i}`,
        query: `${FLORES_LANGUAGES[src]}: ${s}\n${FLORES_LANGUAGES[tgt]}:`,
        target: b.ls[i],
        references: [b.ls[i]],
      }));
    },
    generation: {
      until: ['\n'],
      maxNewTokens: 256,
      filters: { none: (t) => t.trim() },
      score: () => ({}),
    },
    corpus: {
      bleu: (samples) =>
        corpusBleu(
          samples.map((s) => String(s.filtered_resps[0])),
          [samples.map((s) => s.doc.references![0])],
          { tokenizer },
        ).score,
    },
  });
}

const others = Object.keys(FLORES_LANGUAGES).filter((l) => l !== 'eng_Latn');
/** English into and out of each other language. */
export const floresTasks = [
  ...others.map((l) => floresTask('eng_Latn', l)),
  ...others.map((l) => floresTask(l, 'eng_Latn')),
];
export const floresGroup: TaskGroup = { name: 'flores200', tasks: floresTasks.map((t) => t.name), aggregate: 'macro' };
