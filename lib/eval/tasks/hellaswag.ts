import { join } from 'node:path';
import { LlmboxError } from '../../errors.js';
import { choiceTask } from './define.js';
import { readText } from '../../data/files.js';
import type { Doc } from './types.js';

/** lm-evaluation-harness's HellaSwag clean-up, applied to the context and to each ending. */
export function preprocessHellaswag(text: string): string {
  return text
    .trim()
    .replace(/ \[title\]/g, '. ')
    .replace(/\[.*?\]/g, '')
    .replace(/ {2}/g, ' ');
}

/**
 * HellaSwag validation (Zellers et al. 2019) in llama.cpp's text layout: per task, the context
 * ("activity: ctx"), the gold label 0-3, then the four endings. The file has only the validation
 * split, so few-shot examples are drawn from it (never the instance itself); lm-eval draws them
 * from train.
 */
export const hellaswag = choiceTask({
  name: 'hellaswag',
  dataFolder: 'hellaswag',
  methods: ['ppl'],
  loadSplit(dataDir) {
    const file = join(dataDir, 'hellaswag_val_full.txt');
    const lines = readText(file).split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    if (lines.length % 6 !== 0) {
      throw new LlmboxError(`expected 6 lines per task (context, label, 4 endings), got ${lines.length} lines`, {
        file,
      });
    }
    const docs: Doc[] = [];
    for (let i = 0; i < lines.length; i += 6) {
      const gold = Number(lines[i + 1]);
      if (!Number.isInteger(gold) || gold < 0 || gold > 3) {
        throw new LlmboxError(`line ${i + 2}: the gold label should be 0-3, got ${JSON.stringify(lines[i + 1])}`, {
          file,
          field: 'label',
        });
      }
      docs.push({
        id: `hellaswag-${i / 6}`,
        query: preprocessHellaswag(lines[i]),
        choices: lines.slice(i + 2, i + 6).map(preprocessHellaswag),
        gold,
      });
    }
    return docs;
  },
});
