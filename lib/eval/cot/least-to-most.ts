import type { GenerateUntilRequest, LanguageModel } from '../lm.js';
import type { Doc, GenerationSpec } from '../tasks/types.js';

/**
 * Least-to-most prompting (Zhou et al. 2023) in two stages. Decomposition: the model lists the
 * sub-questions the problem needs ("we need to know: "...", "...""), after exemplars that do so.
 * Solving: after exemplars that answer sub-questions in order, the problem, then each
 * sub-question and finally the problem's own question, each answer added to the context before
 * the next is asked.
 */
export interface LeastToMostSpec {
  /** Exemplars of solving by sub-questions, before the instance's problem. */
  solvePrefix: string;
  /** The instance's problem and its final question. */
  problem: (doc: Doc) => { problem: string; question: string };
  maxSubquestions: number;
  /** Where each sub-answer ends. */
  until: string[];
}

/** The last sentence that asks something (else the last sentence): the question a problem ends with. */
export function finalQuestion(problem: string): string {
  const sentences = problem
    .trim()
    .split(/(?<=[.?!])\s+/)
    .filter(Boolean);
  return [...sentences].reverse().find((s) => s.includes('?')) ?? sentences[sentences.length - 1] ?? problem;
}

/** The quoted sub-questions of a decomposition, in order, without the final question and repeats. */
export function parseSubquestions(text: string, final: string, max: number): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/"([^"\n]+)"/g)) {
    const q = m[1].trim();
    if (q && q !== final.trim() && !out.includes(q)) out.push(q);
  }
  return out.slice(0, max);
}

/** The line an exemplar or the instance asks and answers one question in. */
export const qaLine = (q: string, a: string) => `Q: ${q}\nA: ${a}`;

/**
 * The driver: decompositions for all requests in one batch, then one batch per step over the
 * instances still answering. Each returned text holds the decomposition and the answered chain, the
 * final answer last.
 */
export function leastToMost(spec: LeastToMostSpec): NonNullable<GenerationSpec['solve']> {
  return async (lm: LanguageModel, requests: GenerateUntilRequest[], docs: Doc[]) => {
    const decompositions = await lm.generateUntil(requests.map((r) => ({ ...r, until: ['\n'] })));
    const chains = docs.map((d, i) => {
      const { problem, question } = spec.problem(d);
      const subs = parseSubquestions(decompositions[i], question, spec.maxSubquestions);
      return { asks: [...subs, question], transcript: `${spec.solvePrefix}Problem: ${problem}\n\n`, answered: '' };
    });
    const steps = Math.max(...chains.map((c) => c.asks.length));
    for (let s = 0; s < steps; s++) {
      const active = chains.map((c, i) => i).filter((i) => s < chains[i].asks.length);
      const asks = active.map((i) => {
        const context = `${chains[i].transcript}Q: ${chains[i].asks[s]}\nA:`;
        const r = requests[i];
        return {
          ...r,
          context,
          messages: [{ role: 'user' as const, content: context }],
          until: spec.until,
          ...(r.seed !== undefined ? { seed: r.seed + 104729 * (s + 1) } : {}),
        };
      });
      const answers = await lm.generateUntil(asks);
      active.forEach((i, j) => {
        const line = `${qaLine(chains[i].asks[s], answers[j].trim())}\n\n`;
        chains[i].transcript += line;
        chains[i].answered += line;
      });
    }
    return chains.map((c, i) => `To answer it, we need to know:${decompositions[i]}\n\n${c.answered.trimEnd()}`);
  };
}
