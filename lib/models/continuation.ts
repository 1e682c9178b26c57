import type { LoadedModel } from './load.js';

/**
 * Text of the generated ids as it reads after the prompt. Decoding the continuation alone would lose
 * a leading space for tokenizers that strip one at the start of a decode (SentencePiece-style).
 */
export function continuationText(lm: LoadedModel, prompt: number[], out: number[]): string {
  const tok = lm.tokenizer!;
  const full = tok.decode([...prompt, ...out]);
  const head = tok.decode(prompt);
  return full.startsWith(head) ? full.slice(head.length) : tok.decode(out);
}
