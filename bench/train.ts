/**
 * Training throughput on real instruction data (the shipped SFT samples: Dolly prompt/response,
 * FastChat and Glaive ShareGPT conversations, tokenized with stories260K's tokenizer):
 *   - one example per row (padded to the batch's longest) vs packed rows, tokens of data per second,
 *     with the packed rows' attention masked block-diagonally or computed per segment;
 *   - full fine-tuning vs LoRA (rank 8, all linear layers): step time and the memory the run holds
 *     (tensors alive between steps: parameters and AdamW state, from tf.memory()).
 * Models: stories260K, and random config A (hidden 288, 6 layers) with the same 512-token vocabulary.
 * Everything runs side by side in one process and prints one table with ratios.
 *
 *   npm run bench:train                  # both models
 *   npm run bench:train -- --models stories260K --steps 4
 */
import { fileURLToPath } from 'node:url';
import { initEngine, tf } from '../lib/engine/index.js';
import { loadModel, randomModel, type LoadedModel } from '../lib/models/load.js';
import { TextTokenizer } from '../lib/models/tokenizer.js';
import { train, type TrainOptions } from '../lib/train/trainer.js';

const STORIES = fileURLToPath(new URL('../../shared/models/stories260K', import.meta.url));
const SFT = fileURLToPath(new URL('../../shared/data/sft_samples/', import.meta.url));
const DATASETS = [
  'dolly_hhrlhf_train_small.jsonl',
  'fastchat_dummy_conversation.sharegpt.json',
  'glaive_toolcall_en_demo.sharegpt.json',
].map((f) => SFT + f);
const CONFIG_A = {
  model_type: 'llama',
  vocab_size: 512,
  hidden_size: 288,
  intermediate_size: 768,
  num_hidden_layers: 6,
  num_attention_heads: 6,
  num_key_value_heads: 6,
  max_position_embeddings: 1024,
  tie_word_embeddings: false,
  bos_token_id: 1,
  eos_token_id: 2,
};

const args = process.argv.slice(2);
const arg = (name: string, dflt: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : dflt);
const MODELS = arg('--models', 'stories260K,A').split(',');
const STEPS = Number(arg('--steps', '6'));
// Rows per batch: A's 1024-token rows in fours would pass tfjs-wasm's 4 GiB heap during backprop.
const BATCH: Record<string, number> = { stories260K: 4, A: 2 };

async function model(name: string): Promise<LoadedModel> {
  if (name === 'stories260K') return loadModel(STORIES);
  return {
    dir: STORIES,
    model: randomModel(CONFIG_A, { seed: 1 }),
    tokenizer: TextTokenizer.fromDir(STORIES),
    generation: { eosTokenIds: [2], bosTokenId: 1 },
  };
}

interface Run {
  tokensPerSecond: number;
  stepSeconds: number;
  heldMiB: number;
  utilisation: number;
  trainable: number;
}

/** Steps after the first (which also warms up the kernels), timed by the trainer. */
async function run(
  name: string,
  o: Partial<TrainOptions>,
  attention: 'auto' | 'mask' | 'gather' = 'auto',
): Promise<Run> {
  const lm = await model(name);
  lm.model.segmentAttention = attention;
  let held = 0;
  const r = await train(lm, {
    datasets: DATASETS,
    stage: 'sft',
    maxLength: lm.model.config.maxPositionEmbeddings,
    batchSize: BATCH[name] ?? 4,
    maxSteps: STEPS + 1,
    lr: 1e-4,
    valSize: 0,
    seed: 1,
    ...o,
    onStep: () => {
      held = Math.max(held, tf.memory().numBytes);
    },
  });
  lm.model.dispose();
  const timed = r.metrics.slice(1);
  const tokens = timed.reduce((a, m) => a + m.tokens, 0),
    seconds = timed.reduce((a, m) => a + m.seconds, 0);
  return {
    tokensPerSecond: tokens / seconds,
    stepSeconds: seconds / timed.length,
    heldMiB: held / 2 ** 20,
    utilisation: r.data.utilisation,
    trainable: r.parameters.trainable,
  };
}

await initEngine();
const rows: string[][] = [];
for (const name of MODELS) {
  const T = name === 'stories260K' ? 512 : 1024;
  const plain = await run(name, { packing: false });
  const variants: [string, Run][] = [
    [`one example per row (T<=${T})`, plain],
    [`packed rows (T=${T}), masked attention`, await run(name, { packing: true }, 'mask')],
    [`packed rows (T=${T}), per-segment attention`, await run(name, { packing: true }, 'gather')],
  ];
  const best = variants[1][1].tokensPerSecond >= variants[2][1].tokensPerSecond ? variants[1][1] : variants[2][1];
  const lora = await run(name, { packing: true, lora: { rank: 8, targets: ['all-linear'] } });
  for (const [label, r] of variants)
    rows.push([
      name,
      label,
      r.tokensPerSecond.toFixed(0),
      (100 * r.utilisation).toFixed(1),
      r.stepSeconds.toFixed(2),
      r.heldMiB.toFixed(1),
      r.trainable.toLocaleString('en-US'),
      `${(r.tokensPerSecond / plain.tokensPerSecond).toFixed(2)}x`,
    ]);
  rows.push([
    name,
    'packed + LoRA r=8 all-linear',
    lora.tokensPerSecond.toFixed(0),
    (100 * lora.utilisation).toFixed(1),
    lora.stepSeconds.toFixed(2),
    lora.heldMiB.toFixed(1),
    lora.trainable.toLocaleString('en-US'),
    `${(lora.tokensPerSecond / plain.tokensPerSecond).toFixed(2)}x (step time ${(lora.stepSeconds / best.stepSeconds).toFixed(2)}x, memory ${(lora.heldMiB / best.heldMiB).toFixed(2)}x of the faster full run)`,
  ]);
}
const head = [
  'model',
  'layout',
  'data tokens/s',
  'row fill %',
  's/step',
  'weights+optimizer MiB',
  'trainable',
  'vs one per row',
];
const widths = head.map((h, j) => Math.max(h.length, ...rows.map((r) => r[j].length)));
const line = (r: string[]) => `| ${r.map((c, j) => c.padEnd(widths[j])).join(' | ')} |`;
console.log([line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n'));
console.log(
  `\nbatch ${MODELS.map((m) => `${BATCH[m] ?? 4} rows (${m})`).join(', ')}, ${STEPS} timed steps after one warm-up step; tokens/s counts data tokens only (no padding).`,
);
