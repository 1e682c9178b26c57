/**
 * Evaluation wall time with and without the prefix cache, side by side in one process, on
 * stories260K and on a random LLaMA of config B (hidden 768, 12 layers), for MMLU 5-shot, ARC-Easy
 * 0-shot (multi-token options) and GSM8K 8-shot generation. Predictions of both runs are compared.
 *
 *   npm run bench:eval                        # everything
 *   npm run bench:eval -- --models stories260K --limit 4
 *   npm run bench:eval -- --only gsm8k
 *
 * Both models use stories260K's tokenizer (vocabulary 512: B's embedding and head are small, its 12
 * transformer layers are config B's) and a window raised to 8192 positions so that 5- and 8-shot
 * prompts fit without truncation; stories260K was trained on 512, so its answers beyond that are
 * not meaningful, only its speed. The random model never emits a stop sequence, so its GSM8K
 * generations run to the cap.
 */
import { fileURLToPath } from 'node:url';
import { initEngine } from '../lib/engine/index.js';
import { evaluate, type EvalRun } from '../lib/eval/evaluate.js';
import { LocalLM } from '../lib/eval/local.js';
import { LlamaModel } from '../lib/models/llama.js';
import { loadModel, randomModel, type LoadedModel } from '../lib/models/load.js';
import { arg } from './common.js';

const STORIES = fileURLToPath(new URL('../../shared/models/stories260K', import.meta.url));
const WINDOW = 8192;
const B_CONFIG = {
  model_type: 'llama',
  vocab_size: 512,
  hidden_size: 768,
  intermediate_size: 2048,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  num_key_value_heads: 12,
  max_position_embeddings: WINDOW,
  tie_word_embeddings: false,
  bos_token_id: 1,
  eos_token_id: 2,
};

interface Workload {
  label: string;
  tasks: string[];
  limit: number;
  maxNewTokens?: number;
}

async function model(name: string): Promise<LoadedModel> {
  const stories = await loadModel(STORIES);
  if (name === 'stories260K')
    return {
      ...stories,
      model: new LlamaModel({ ...stories.model.config, maxPositionEmbeddings: WINDOW }, stories.model.params),
    };
  return { ...stories, dir: 'random-B', model: randomModel(B_CONFIG, { seed: 1, std: 0.02 }) };
}

/** Same predictions: equal per-instance metrics and generated texts, log-likelihoods within float32 noise. */
function compare(a: EvalRun, b: EvalRun): { identical: boolean; maxRelDiff: number } {
  let identical = true,
    maxRelDiff = 0;
  a.results.forEach((r, t) =>
    r.samples.forEach((s, i) => {
      const o = b.results[t].samples[i];
      if (JSON.stringify(s.metrics) !== JSON.stringify(o.metrics)) identical = false;
      if (r.method === 'gen') {
        if (JSON.stringify(s.resps) !== JSON.stringify(o.resps)) identical = false;
        return;
      }
      (s.filtered_resps as [number, boolean][]).forEach(([ll], j) => {
        const other = (o.filtered_resps as [number, boolean][])[j][0];
        maxRelDiff = Math.max(maxRelDiff, Math.abs(ll - other) / Math.max(1, Math.abs(other)));
      });
    }),
  );
  return { identical, maxRelDiff };
}

async function main(): Promise<void> {
  const info = await initEngine();
  const models = (arg('models') ?? 'stories260K,B').split(',');
  // Enough instances per task that the one-time encoding of a few-shot prefix is amortised as in a
  // real run, within minutes for the uncached side (B encodes ~350 tokens/s at these lengths).
  const scale = Number(arg('limit') ?? 0);
  const workloads = (name: string): Workload[] => {
    const small = name === 'B';
    return [
      {
        label: 'MMLU 5-shot (2 subjects)',
        tasks: ['mmlu_high_school_biology', 'mmlu_marketing'],
        limit: scale || (small ? 4 : 16),
      },
      { label: 'ARC-Easy 0-shot', tasks: ['arc_easy'], limit: scale * 4 || (small ? 16 : 64) },
      { label: 'GSM8K 8-shot gen (max 32 tok)', tasks: ['gsm8k'], limit: scale * 2 || 32, maxNewTokens: 32 },
    ];
  };
  console.log(
    `backend ${info.backend}, native add-on ${info.native.enabled ? `on (${info.native.blas})` : 'off'}, threads ${info.threads}, batch size 8\n`,
  );
  const rows: string[][] = [];
  for (const name of models) {
    const lm = await model(name);
    // Warm-up: the first forward passes of a process pay one-time costs.
    await evaluate(new LocalLM(lm), ['arc_easy'], { limit: 2 });
    for (const w of workloads(name).filter(
      (w) => !arg('only') || w.label.toLowerCase().includes(arg('only')!.toLowerCase()),
    )) {
      const opts = { limit: w.limit, maxNewTokens: w.maxNewTokens };
      let t0 = performance.now();
      const plain = await evaluate(new LocalLM(lm, { prefixCache: false }), w.tasks, opts);
      const plainS = (performance.now() - t0) / 1000;
      const cachedLm = new LocalLM(lm);
      t0 = performance.now();
      const cached = await evaluate(cachedLm, w.tasks, opts);
      const cachedS = (performance.now() - t0) / 1000;
      const { identical, maxRelDiff } = compare(plain, cached);
      const st = cachedLm.prefixCache!.stats;
      const n = plain.results.reduce((a, r) => a + r.n, 0);
      rows.push([
        name,
        w.label,
        String(n),
        plainS.toFixed(2),
        cachedS.toFixed(2),
        `${(plainS / cachedS).toFixed(2)}x`,
        identical ? 'yes' : 'NO',
        maxRelDiff.toExponential(1),
        `${st.reusedTokens}/${st.reusedTokens + st.computedTokens}`,
      ]);
      console.error(`${name} ${w.label}: ${plainS.toFixed(1)} s -> ${cachedS.toFixed(1)} s`);
    }
  }
  const head = [
    'model',
    'workload',
    'instances',
    'no cache s',
    'cache s',
    'speedup',
    'same predictions',
    'max rel |dLL|',
    'prefix tokens reused',
  ];
  console.log(`| ${head.join(' | ')} |\n|${head.map(() => '---').join('|')}|`);
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);
}

await main();
