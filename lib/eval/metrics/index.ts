/** Metric registry: a new metric is one file plus one line here. */
import { exactMatch, f1Score } from './squad.js';

/** A per-instance metric on a prediction and its references; the task aggregates (mean by default). */
export type InstanceMetric = (prediction: string, references: string[]) => number;

export const INSTANCE_METRICS: Record<string, InstanceMetric> = {
  exact_match: exactMatch,
  f1: f1Score,
};

export { normalizeAnswer, exactMatch, f1Score } from './squad.js';
export { passAtK } from './pass-at-k.js';
export { mean, median, sampleStd, stderrOfMean, bootstrapStderr, softmax } from './stats.js';
export { corpusBleu, sentenceBleu, bleuTokenize, type BleuTokenizer } from './bleu.js';
export { rougeN, rougeL, rougeTokenize } from './rouge.js';
export { distinctN, repetitionRate } from './diversity.js';
export { INVALID, regexFilter, lastNumber, normalizeNumber, lastBoxed, normalizeMathAnswer } from './extract.js';
