import { join } from 'node:path';
import { LlmboxError } from '../../errors.js';
import { choiceTask } from './define.js';
import { field, isInt, isString, readJsonl } from '../../data/files.js';
import type { Doc } from './types.js';

/** lm-eval's general_detokenize: the spaces a tokenised text has before punctuation and inside brackets and quotes. */
export function detokenize(s: string): string {
  return s
    .replace(/ n't/g, "n't")
    .replace(/ \)/g, ')')
    .replace(/\( /g, '(')
    .replace(/" /g, '"')
    .replace(/ "/g, '"')
    .replace(/ (['.,])/g, '$1');
}

/**
 * SuperGLUE WSC (Levesque et al. 2012, span format): the pronoun marked with asterisks in the passage,
 * then "does the pronoun "*it*" refer to "*the trophy*"?" answered no/yes (lm-eval's wsc).
 */
export const superglueWsc = choiceTask({
  name: 'wsc',
  dataFolder: 'superglue_wsc',
  methods: ['ppl'],
  loadSplit(dataDir, split) {
    const file = join(dataDir, split === 'eval' ? 'val.jsonl' : 'train.jsonl');
    return readJsonl(file).map((row, i): Doc => {
      const text = field(row, 'text', isString, 'the passage', file, i);
      const at = field(row, 'target.span2_index', isInt, 'a word index', file, i);
      const pronoun = field(row, 'target.span2_text', isString, 'the pronoun', file, i);
      const noun = field(row, 'target.span1_text', isString, 'the noun phrase', file, i);
      if (typeof row.label !== 'boolean')
        throw new LlmboxError(`row ${i + 1}: field label should be true or false`, { file, field: 'label' });
      // Span indices count words, not characters.
      const pre = text.split(/\s+/).slice(0, at).join(' ');
      const post = text.slice(pre.length + pronoun.length + 1);
      const passage = detokenize(`${pre} *${pronoun}*${post}`);
      return {
        id: `wsc-${split}-${i}`,
        query: `Passage: ${passage}\nQuestion: In the passage above, does the pronoun "*${pronoun}*" refer to "*${noun}*"?\nAnswer:`,
        choices: ['no', 'yes'],
        gold: row.label ? 1 : 0,
      };
    });
  },
});
