import { join } from 'node:path';
import { exactMatch } from '../metrics/index.js';
import { generationTask } from './define.js';
import { field, isString, isStringArray, readJsonl } from '../../data/files.js';
import type { Doc } from './types.js';

/** The first line (or clause) of a short answer, as lm-eval's until [\n . ,] leaves it. */
const QA_UNTIL = ['\n', '.', ','];
const answerMatch = (answer: string, doc: Doc) => ({ exact_match: exactMatch(answer, doc.references!) });

/** TriviaQA (Joshi et al. 2017), MosaicML's 3,000-question validation sample: "Question: ...\nAnswer:", exact match against any alias. */
export const triviaqa = generationTask({
  name: 'triviaqa',
  dataFolder: 'triviaqa',
  loadSplit(dataDir) {
    const file = join(dataDir, 'triviaqa_sm_sub.llmfoundry.jsonl');
    return readJsonl(file).map((row, i): Doc => {
      const answer = field(row, 'answer', isString, 'a string', file, i);
      const aliases = field(row, 'aliases', isStringArray, 'a list of strings', file, i);
      return {
        id: `triviaqa-${i}`,
        query: field(row, 'context', isString, 'a "Question: ...\\nAnswer:" string', file, i),
        target: answer,
        references: [answer, ...aliases],
      };
    });
  },
  generation: { until: QA_UNTIL, maxNewTokens: 32, filters: { none: (t) => t.trim() }, score: answerMatch },
});

/** Natural Questions open (Lee et al. 2019), dev: "Q: {question}?\nA:", exact match against the answer list (lm-eval's nq_open). */
export const nqOpen = generationTask({
  name: 'nq_open',
  dataFolder: 'nq_open',
  loadSplit(dataDir) {
    const file = join(dataDir, 'NQ-open.dev.jsonl');
    return readJsonl(file).map((row, i): Doc => {
      const answers = field(row, 'answer', isStringArray, 'a list of acceptable answers', file, i);
      return {
        id: `nq-${i}`,
        query: `Q: ${field(row, 'question', isString, 'a string', file, i)}?\nA:`,
        target: answers[0],
        references: answers,
      };
    });
  },
  generation: { until: QA_UNTIL, maxNewTokens: 32, filters: { none: (t) => t.trim() }, score: answerMatch },
});
