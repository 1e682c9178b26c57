import type {
  Capabilities,
  GenerateUntilRequest,
  LanguageModel,
  LoglikelihoodRequest,
  LoglikelihoodResult,
  ModelDescription,
} from '../../lib/eval/lm.js';

/** A scripted model: answers come from functions of the request, so expected metrics are known exactly. */
export class ScriptedLM implements LanguageModel {
  readonly modelId = 'scripted';
  readonly seen: GenerateUntilRequest[] = [];
  readonly capabilities: Capabilities;
  constructor(
    private readonly gen: (r: GenerateUntilRequest, call: number) => string,
    private readonly ll: (r: LoglikelihoodRequest) => number = () => 0,
    capabilities: Partial<Capabilities> = {},
    private readonly rolling: (text: string) => number = () => 0,
  ) {
    this.capabilities = { loglikelihood: true, loglikelihood_rolling: true, generate_until: true, ...capabilities };
  }
  describe(): ModelDescription {
    return { model: this.modelId, model_hash: '', backend: 'scripted', model_type: 'base' };
  }
  async loglikelihood(reqs: LoglikelihoodRequest[]): Promise<LoglikelihoodResult[]> {
    return reqs.map((r) => ({ logprob: this.ll(r), isGreedy: false, tokens: 1 }));
  }
  async loglikelihoodRolling(texts: string[]): Promise<number[]> {
    return texts.map((t) => this.rolling(t));
  }
  async generateUntil(reqs: GenerateUntilRequest[]): Promise<string[]> {
    return reqs.map((r) => {
      this.seen.push(r);
      return this.gen(r, this.seen.length - 1);
    });
  }
}
