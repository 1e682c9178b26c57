import { join } from 'node:path';
import { LlmboxError } from '../../errors.js';
import { choiceTask } from './define.js';
import { field, isArray, isString, readJsonl } from '../../data/files.js';
import type { Doc, Task } from './types.js';

/**
 * AI2 ARC (Clark et al. 2018) in the original JSONL schema, with lm-evaluation-harness's arc_easy /
 * arc_challenge prompt: "Question: {stem}\nAnswer:" and each choice's text as the continuation;
 * evaluation on test, few-shot examples from train.
 */
function arcTask(name: string, set: 'Easy' | 'Challenge'): Task {
  return choiceTask({
    name,
    dataFolder: 'arc',
    calibration: 'Answer:',
    loadSplit(dataDir, split) {
      const file = join(dataDir, `ARC-${set}-${split === 'eval' ? 'Test' : 'Train'}.jsonl`);
      return readJsonl(file).map((row, i): Doc => {
        const stem = field(row, 'question.stem', isString, 'a string', file, i);
        const choices = field(row, 'question.choices', isArray, 'a list of {text, label}', file, i);
        const answer = field(row, 'answerKey', isString, 'a choice label such as "A"', file, i);
        const texts = choices.map((_, j) => field(row, `question.choices.${j}.text`, isString, 'a string', file, i));
        const labels = choices.map((_, j) => field(row, `question.choices.${j}.label`, isString, 'a string', file, i));
        const gold = labels.indexOf(answer);
        if (gold < 0) {
          throw new LlmboxError(`row ${i + 1}: answerKey ${answer} is not one of the labels ${labels.join(', ')}`, {
            file,
            field: 'answerKey',
          });
        }
        return {
          id: typeof row.id === 'string' ? row.id : `${i}`,
          query: `Question: ${stem}\nAnswer:`,
          question: stem,
          choices: texts,
          gold,
        };
      });
    },
  });
}

export const arcEasy = arcTask('arc_easy', 'Easy');
export const arcChallenge = arcTask('arc_challenge', 'Challenge');
