import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LlmboxError } from '../errors.js';
import { LlamaModel } from '../models/llama.js';
import { saveModel, type LoadedModel } from '../models/load.js';
import { TextTokenizer } from '../models/tokenizer.js';
import { writeFileAtomic } from '../util/fs.js';

type Json = Record<string, unknown>;

export interface VocabExpansion {
  /** New tokens in id order, each with the merge that makes it. */
  added: { id: number; token: string; merge: [string, string]; count: number }[];
  oldVocab: number;
  newVocab: number;
  /** Tokens the corpus takes with the old and the new tokenizer. */
  tokensBefore: number;
  tokensAfter: number;
}

const isByte = (t: string) => /^<0x[0-9A-F]{2}>$/.test(t);

/**
 * Learns `count` new BPE merges from a corpus on top of a BPE tokenizer (LLMBox's merge_tokenizer does
 * this with SentencePiece): the corpus is tokenized as the model reads it, pieces are grouped into words
 * at word-start markers, and the most frequent adjacent pair whose merge is not yet a token is merged,
 * repeatedly. New merges rank after the old ones, so existing tokens keep their ids and merges.
 */
export function learnMerges(
  tok: TextTokenizer,
  texts: string[],
  count: number,
): { token: string; merge: [string, string]; count: number }[] {
  const vocab = new Set<string>();
  for (let id = 0; id < tok.vocabSize; id++) {
    const t = tok.idToToken(id);
    if (t !== undefined) vocab.add(t);
  }
  const words = new Map<string, number>();
  for (const text of texts) {
    const pieces = tok.encode(text, { addSpecialTokens: false }).map((id) => tok.idToToken(id)!);
    let word: string[] = [];
    const flush = () => {
      if (word.length > 1) words.set(word.join('\u0000'), (words.get(word.join('\u0000')) ?? 0) + 1);
      word = [];
    };
    for (const p of pieces) {
      if (p.startsWith('▁') || isByte(p)) flush();
      if (isByte(p)) continue;
      word.push(p);
    }
    flush();
  }
  let list = [...words.entries()].map(([w, c]) => ({ parts: w.split('\u0000'), c }));
  const out: { token: string; merge: [string, string]; count: number }[] = [];
  while (out.length < count) {
    const pairs = new Map<string, number>();
    for (const { parts, c } of list) {
      for (let i = 0; i + 1 < parts.length; i++) {
        if (vocab.has(parts[i] + parts[i + 1])) continue;
        const k = parts[i] + '\u0000' + parts[i + 1];
        pairs.set(k, (pairs.get(k) ?? 0) + c);
      }
    }
    let best: string | undefined,
      bestCount = 1;
    // Pairs seen once teach nothing; ties go to the lexically first pair so runs are reproducible.
    for (const [k, c] of pairs)
      if (c > bestCount || (c === bestCount && best !== undefined && k < best)) [best, bestCount] = [k, c];
    if (!best) break;
    const [a, b] = best.split('\u0000');
    const merged = a + b;
    vocab.add(merged);
    out.push({ token: merged, merge: [a, b], count: bestCount });
    list = list
      .map(({ parts, c }) => {
        const next: string[] = [];
        for (let i = 0; i < parts.length; i++) {
          if (i + 1 < parts.length && parts[i] === a && parts[i + 1] === b) {
            next.push(merged);
            i++;
          } else next.push(parts[i]);
        }
        return { parts: next, c };
      })
      .filter((w) => w.parts.length > 1);
  }
  return out;
}

/**
 * Adds learned tokens to a model: tokenizer.json gains the vocabulary entries and merges (old ids
 * unchanged), the embedding (and an untied head) gain rows initialised to the mean of the old rows.
 * Returns the expanded model and tokenizer JSON; `saveExpanded` writes them.
 */
export function expandVocabulary(
  loaded: LoadedModel,
  learned: { token: string; merge: [string, string] }[],
): { model: LlamaModel; tokenizerJson: Json; firstNewId: number } {
  const tokenizerJson = JSON.parse(readFileSync(join(loaded.dir, 'tokenizer.json'), 'utf8')) as Json;
  const bpe = tokenizerJson.model as {
    type?: string;
    vocab: Record<string, number>;
    merges: (string | [string, string])[];
  };
  if (bpe?.type !== 'BPE')
    throw new LlmboxError(`vocabulary expansion needs a BPE tokenizer, this one is ${bpe?.type}`, {
      file: join(loaded.dir, 'tokenizer.json'),
      field: 'model.type',
    });
  const firstNewId =
    Math.max(
      ...Object.values(bpe.vocab),
      ...((tokenizerJson.added_tokens as { id: number }[] | undefined) ?? []).map((t) => t.id),
    ) + 1;
  const stringMerges = typeof bpe.merges[0] === 'string';
  learned.forEach((l, i) => {
    bpe.vocab[l.token] = firstNewId + i;
    bpe.merges.push(stringMerges ? `${l.merge[0]} ${l.merge[1]}` : l.merge);
  });
  const cfg = loaded.model.config;
  const newVocab = Math.max(cfg.vocabSize, firstNewId + learned.length);
  const raw = loaded.model.toRaw();
  const grow = (name: string) => {
    const t = raw.get(name);
    if (!t) return;
    const [V, H] = t.shape;
    const data = new Float32Array(newVocab * H);
    data.set(t.data as Float32Array);
    const mean = new Float32Array(H);
    for (let v = 0; v < V; v++) for (let h = 0; h < H; h++) mean[h] += t.data[v * H + h] / V;
    for (let v = firstNewId; v < newVocab; v++) data.set(mean, v * H);
    raw.set(name, { shape: [newVocab, H], data });
  };
  grow('model.embed_tokens.weight');
  if (cfg.tieWordEmbeddings) raw.delete('lm_head.weight');
  else grow('lm_head.weight');
  const config = { ...cfg, vocabSize: newVocab };
  return { model: LlamaModel.fromRaw(config, raw, 'expanded model'), tokenizerJson, firstNewId };
}

/** Learns `count` tokens from the corpus files and writes the expanded model folder. */
export function mergeTokenizer(loaded: LoadedModel, corpus: string[], count: number, output: string): VocabExpansion {
  if (!loaded.tokenizer) throw new LlmboxError('the model has no tokenizer.json to expand', { file: loaded.dir });
  const texts = corpus.flatMap((f) =>
    readFileSync(f, 'utf8')
      .split('\n')
      .filter((l) => l.trim()),
  );
  if (!texts.length)
    throw new LlmboxError('the corpus is empty', { file: corpus.join(', '), fix: 'pass text files with content' });
  const learned = learnMerges(loaded.tokenizer, texts, count);
  const { model, tokenizerJson, firstNewId } = expandVocabulary(loaded, learned);
  saveModel(output, model, { tokenizerFrom: loaded.dir, generation: loaded.generation });
  writeFileAtomic(join(output, 'tokenizer.json'), JSON.stringify(tokenizerJson, null, 2) + '\n');
  const fresh = TextTokenizer.fromDir(output);
  const measure = (t: TextTokenizer) => texts.reduce((n, x) => n + t.encode(x, { addSpecialTokens: false }).length, 0);
  const out: VocabExpansion = {
    added: learned.map((l, i) => ({ id: firstNewId + i, ...l })),
    oldVocab: loaded.model.config.vocabSize,
    newVocab: model.config.vocabSize,
    tokensBefore: measure(loaded.tokenizer),
    tokensAfter: measure(fresh),
  };
  model.dispose();
  return out;
}
