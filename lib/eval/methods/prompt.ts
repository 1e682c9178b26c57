import { LETTERS } from '../tasks/define.js';
import type { Message } from '../../data/records.js';
import type { Doc, Method, Task } from '../tasks/types.js';

/** The options listed under the question with letters, then "Answer:" (option probability). */
export function listedOptions(doc: Doc): string {
  if (doc.question === undefined || !doc.choices)
    throw new Error(`doc ${doc.id}: the prob method needs the bare question and the options`);
  return `${doc.question}\n${doc.choices.map((c, j) => `${LETTERS[j]}. ${c}`).join('\n')}\nAnswer:`;
}

/** The instance as the model sees it under a method (without few-shot examples). */
export function instanceQuery(task: Task, method: Method, doc: Doc): string {
  return method === 'prob' ? listedOptions(doc) : doc.query;
}

/** A solved example: the query followed by its answer under the method. */
export function solvedExample(task: Task, method: Method, doc: Doc): string {
  if (method === 'gen') return doc.query + task.targetDelimiter + (doc.target ?? doc.references?.[0] ?? '');
  if (doc.gold === undefined || !doc.choices)
    throw new Error(`doc ${doc.id}: a multiple-choice example needs options and a gold index`);
  if (method === 'prob') return `${listedOptions(doc)} ${LETTERS[doc.gold]}`;
  if (doc.choiceContexts) return doc.choiceContexts[doc.gold] + task.targetDelimiter + doc.query;
  return doc.query + task.targetDelimiter + doc.choices[doc.gold];
}

/**
 * Description, solved examples each followed by the few-shot delimiter: everything before the
 * instance. An instruction (APE's) replaces the task's description.
 */
export function fewshotPrefix(task: Task, method: Method, doc: Doc, examples: Doc[], instruction?: string): string {
  return (
    (instruction ?? task.description?.(doc) ?? '') +
    examples.map((e) => solvedExample(task, method, e) + task.fewshotDelimiter).join('')
  );
}

/** A solved example as one chat exchange: what the user asks and what the assistant answers. */
export function exampleTurns(task: Task, method: Method, doc: Doc): [Message, Message] {
  const ask = (content: string): Message => ({ role: 'user', content });
  const answer = (content: string): Message => ({ role: 'assistant', content });
  if (method === 'gen') return [ask(doc.query), answer(doc.target ?? doc.references?.[0] ?? '')];
  if (doc.gold === undefined || !doc.choices)
    throw new Error(`doc ${doc.id}: a multiple-choice example needs options and a gold index`);
  if (method === 'prob') return [ask(listedOptions(doc)), answer(LETTERS[doc.gold])];
  if (doc.choiceContexts) return [ask(doc.choiceContexts[doc.gold]), answer(doc.query.trim())];
  return [ask(doc.query), answer(doc.choices[doc.gold])];
}

/**
 * Everything before an instance, twice: as flat text for base models, and as chat turns for chat
 * models (the description as a system message, each example as a user/assistant exchange:
 * lm-eval's fewshot_as_multiturn).
 */
export interface Preamble {
  text: string;
  turns: Message[];
}

export function preamble(task: Task, method: Method, doc: Doc, examples: Doc[], instruction?: string): Preamble {
  const description = (instruction ?? task.description?.(doc))?.trim() ?? '';
  return {
    text: fewshotPrefix(task, method, doc, examples, instruction),
    turns: [
      ...(description ? [{ role: 'system' as const, content: description }] : []),
      ...examples.flatMap((e) => exampleTurns(task, method, e)),
    ],
  };
}
