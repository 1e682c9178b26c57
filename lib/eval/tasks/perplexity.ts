import { join } from 'node:path';
import type { SampleRecord } from '../results.js';
import { field, isString, readJsonl, readText } from '../../data/files.js';
import type { Doc, Task } from './types.js';

const sums = (samples: SampleRecord[]) => {
  let ll = 0,
    words = 0,
    bytes = 0;
  for (const s of samples) {
    const [l, w, b] = s.filtered_resps as number[];
    ll += l;
    words += w;
    bytes += b;
  }
  return { ll, words, bytes };
};

/**
 * Perplexity of whole documents from rolling log-likelihoods, weighted as lm-evaluation-harness's
 * wikitext task: word perplexity exp(-sum LL / sum words), byte perplexity exp(-sum LL / sum bytes),
 * bits per byte -sum LL / (sum bytes * ln 2). Words are whitespace-separated pieces, bytes UTF-8.
 */
function perplexityTask(
  name: string,
  file: string,
  split: (text: string, file: string) => string[],
  dataFolder = 'pretrain_text',
): Task {
  return {
    name,
    version: 1,
    dataFolder,
    methods: ['rolling'],
    defaultMethod: 'rolling',
    defaultShots: 0,
    fewshotOrder: 'first',
    targetDelimiter: '',
    fewshotDelimiter: '',
    loadSplit(dataDir) {
      const path = join(dataDir, file);
      return split(readText(path), path).map((text, i): Doc => ({ id: `${name}-${i}`, query: text }));
    },
    corpus: {
      word_perplexity: (s) => {
        const { ll, words } = sums(s);
        return Math.exp(-ll / words);
      },
      byte_perplexity: (s) => {
        const { ll, bytes } = sums(s);
        return Math.exp(-ll / bytes);
      },
      bits_per_byte: (s) => {
        const { ll, bytes } = sums(s);
        return -ll / (bytes * Math.LN2);
      },
    },
  };
}

/** The TinyStories sample (the corpus stories260K was trained on), stories separated by <|endoftext|>. */
export const tinystoriesPpl = perplexityTask('tinystories_ppl', 'tinystories_sample.txt', (t) =>
  t
    .split('<|endoftext|>')
    .map((s) => s.trim())
    .filter(Boolean),
);
/** 30 English Wikipedia articles, one per line. */
export const wikipediaPpl = perplexityTask('wikipedia_ppl', 'wiki_demo.txt', (t) =>
  t
    .split('\n')
    .map((s) => s.trim())
    .filter(Boolean),
);
/** 300 C4 (en) documents. */
export const c4Ppl = perplexityTask('c4_ppl', 'c4_demo.jsonl', (_, file) =>
  readJsonl(file).map((r, i) => field(r, 'text', isString, 'a string', file, i)),
);

/**
 * WikiText-2 test (Merity et al. 2016), one document per article (a " = Title = " line opens each,
 * as lm-eval's document-level wikitext). The stored copy lacks the original's empty lines (see its
 * PROVENANCE.md), so perplexities are close to lm-eval's, not identical.
 */
export const wikitext2 = perplexityTask(
  'wikitext2',
  'wiki.test.raw',
  (t) => {
    const docs: string[] = [];
    for (const line of t.split(/\r?\n/)) {
      if (/^ = [^=].* = $/.test(line) || !docs.length) docs.push(line.trim());
      else docs[docs.length - 1] += `\n${line}`;
    }
    return docs.filter((d) => d.trim());
  },
  'wikitext2',
);
