/**
 * Every default llmbox applies, in one place: the library falls back to these, and the CLI shows and
 * passes the same values, so a run from the shell and one from a notebook mean the same thing.
 */
export const DEFAULTS = {
  eval: {
    /** Few-shot draws and sampling (lm-evaluation-harness uses 1234 too). */
    seed: 1234,
    batchSize: 8,
    /** Tokens in one forward pass over a batch of requests. */
    maxBatchTokens: 8192,
    /** Instances per model call and per resume checkpoint. */
    chunkSize: 32,
    /** Generation length when neither the task nor the caller caps it. */
    maxNewTokens: 256,
    /** Temperature of repeated samples (self-consistency, pass@k) when none is given. */
    sampleTemperature: 0.8,
  },
  icl: {
    /** KATE's paper puts the nearest example last, next to the instance (LLMBox puts it first). */
    kateOrder: 'nearest-last',
    /** GlobalE: held-out instances whose predicted labels score an ordering; orderings tried at most (4! = 24). */
    probes: 8,
    orderings: 24,
    /** APE: instructions proposed, demonstrations shown to the proposer, dev instances scoring them. */
    candidates: 8,
    demos: 5,
    dev: 20,
    instructionTokens: 48,
    proposalTemperature: 0.9,
  },
  cot: {
    /** PAL programs: wall-clock limit and memory (the sandbox's). */
    palTimeoutMs: 5_000,
    palMemoryMb: 512,
    /** Least-to-most: sub-questions asked at most before the problem's own. */
    maxSubquestions: 5,
  },
  remote: { concurrency: 4, maxRetries: 5, timeoutSeconds: 300 },
  generate: { maxNewTokens: 64, temperature: 0 },
  train: {
    seed: 42,
    stage: 'sft',
    batchSize: 8,
    gradAccum: 1,
    epochs: 1,
    lr: 1e-4,
    schedule: 'cosine',
    warmup: 0,
    weightDecay: 0,
    maxGradNorm: 1,
    /** Held-out tokens for the evaluation loss. */
    evalTokens: 32768,
    /** Cluster GPU memory (GiB) assumed by --export-for. */
    exportGpuGib: 80,
  },
  preference: {
    loss: 'sigmoid',
    /** DPO's beta (TRL's default); SimPO's paper uses beta 2 with gamma 1 (gamma/beta 0.5). */
    beta: 0.1,
    simpoGamma: 1,
  },
  ppo: {
    batchSize: 8,
    maxNewTokens: 24,
    temperature: 1,
    ppoEpochs: 2,
    lr: 1e-3,
    /** Ziegler et al. / TRL: initial KL coefficient 0.2, target 6 nats, horizon 10,000 samples. */
    klCoef: 0.2,
    klTarget: 6,
    klHorizon: 10_000,
    gamma: 1,
    lam: 0.95,
    clip: 0.2,
    valueClip: 0.2,
    valueCoef: 0.1,
  },
  lora: {
    targets: ['q_proj', 'v_proj'] as readonly string[],
    dropout: 0,
    /** Rank assumed where a config omits it (PEFT's default). */ rank: 8,
  },
  serve: {
    host: '127.0.0.1',
    port: 8000,
    batchSize: 8,
    maxBatchTokens: 8192,
    batchWindowMs: 2,
    maxBodyBytes: 4 * 2 ** 20,
  },
  gpuCalc: { seq: 2048, gpus: 1, batch: 1, setting: 'zero3' },
  sandbox: { timeoutMs: 10_000, memoryMb: 1024 },
} as const;
