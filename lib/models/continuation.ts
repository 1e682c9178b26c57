import type { LoadedModel } from './load.js';

/**
 * Text of the generated ids as it reads after the prompt. Decoding the continuation alone would lose
 * a leading space for tokenizers that strip one at the start of a decode (SentencePiece-style).
 */
export function continuationText(loaded: LoadedModel, prompt: number[], out: number[]): string {
  const tok = loaded.tokenizer!;
  if (!out.length) return '';
  const full = tok.decode([...prompt, ...out]);
  // The tokenizer refuses to decode nothing.
  const head = prompt.length ? tok.decode(prompt) : '';
  return full.startsWith(head) ? full.slice(head.length) : tok.decode(out);
}
