/**
 * APE (Zhou et al. 2023, "Large Language Models Are Human-Level Prompt Engineers"): a model reads
 * input/output demonstrations and proposes the instruction that produced them (forward generation);
 * each candidate is scored on held-out dev instances and the best is kept.
 */
export function apeProposalPrompt(pairs: readonly (readonly [string, string])[]): string {
  const shown = pairs.map(([input, output]) => `Input: ${input}\nOutput: ${output}`).join('\n\n');
  return (
    `I gave a friend an instruction and ${pairs.length} inputs. The friend read the instruction and wrote an ` +
    `output for every one of the inputs. Here are the input-output pairs:\n\n${shown}\n\nThe instruction was to`
  );
}

/** A proposal as an instruction: its first line, completing "The instruction was to", capitalised; empty when nothing usable came back. */
export function apeInstruction(completion: string): string {
  const line = completion.trim().split('\n')[0].trim();
  if (!line) return '';
  return line[0].toUpperCase() + line.slice(1);
}

/** The best-scoring candidate: the highest score, then the higher tie-break, then the earlier candidate. */
export function bestCandidate(scores: readonly { score: number; tieBreak: number }[]): number {
  let best = 0;
  scores.forEach((s, i) => {
    const b = scores[best];
    if (s.score > b.score + 1e-12 || (Math.abs(s.score - b.score) <= 1e-12 && s.tieBreak > b.tieBreak + 1e-12))
      best = i;
  });
  return best;
}
