/**
 * Training throughput on real instruction data (the shipped SFT samples: Dolly prompt/response,
 * FastChat and Glaive ShareGPT conversations, tokenized with stories260K's tokenizer):
 *   - one example per row (padded to the batch's longest) vs packed rows, tokens of data per second;
 *   - full fine-tuning vs LoRA (rank 8, all linear layers): step time and the memory the run holds
 *     (parameters, gradients and AdamW state, from tf.memory()).
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
const DATASETS = ['dolly_hhrlhf_train_small.jsonl', 'fastchat_dummy_conversation.sharegpt.json', 'glaive_toolcall_en_demo.sharegpt.json'].map((f) => SFT + f);
const CONFIG_A = { model_type: 'llama', vocab_size: 512, hidden_size: 288, intermediate_size: 768, num_hidden_layers: 6, num_attention_heads: 6, num_key_value_heads: 6, max_position_embeddings: 1024, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2 };

const args = process.argv.slice(2);
const arg = (name: string, dflt: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : dflt);
const MODELS = arg('--models', 'stories260K,A').split(',');
const STEPS = Number(arg('--steps', '6'));

async function model(name: string): Promise<LoadedModel> {
  if (name === 'stories260K') return loadModel(STORIES);
  return { dir: STORIES, model: randomModel(CONFIG_A, { seed: 1 }), tokenizer: TextTokenizer.fromDir(STORIES), generation: { eosTokenIds: [2], bosTokenId: 1 } };
}

interface Run {
  tokensPerSecond: number;
  stepSeconds: number;
  heldMiB: number;
  utilisation: number;
  trainable: number;
}

/** Steps after the first (which also warms up the kernels), timed by the trainer. */
async function run(name: string, o: Partial<TrainOptions>): Promise<Run> {
  const lm = await model(name);
  let held = 0;
  const r = await train(lm, {
    datasets: DATASETS, stage: 'sft', maxLength: lm.model.config.maxPositionEmbeddings, batchSize: 4, maxSteps: STEPS + 1, lr: 1e-4, valSize: 0, seed: 1, ...o,
    onStep: () => { held = Math.max(held, tf.memory().numBytes); },
  });
  lm.model.dispose();
  const timed = r.metrics.slice(1);
  const tokens = timed.reduce((a, m) => a + m.tokens, 0), seconds = timed.reduce((a, m) => a + m.seconds, 0);
  return { tokensPerSecond: tokens / seconds, stepSeconds: seconds / timed.length, heldMiB: held / 2 ** 20, utilisation: r.data.utilisation, trainable: r.parameters.trainable };
}

await initEngine();
const rows: string[][] = [];
for (const name of MODELS) {
  const plain = await run(name, { packing: false });
  const packed = await run(name, { packing: true });
  const lora = await run(name, { packing: true, lora: { rank: 8, targets: ['all-linear'] } });
  const T = name === 'stories260K' ? 512 : 1024;
  rows.push([name, `one example per row (T<=${T})`, plain.tokensPerSecond.toFixed(0), (100 * plain.utilisation).toFixed(1), plain.stepSeconds.toFixed(2), plain.heldMiB.toFixed(1), plain.trainable.toLocaleString('en-US'), '1.00x']);
  rows.push([name, `packed rows (T=${T})`, packed.tokensPerSecond.toFixed(0), (100 * packed.utilisation).toFixed(1), packed.stepSeconds.toFixed(2), packed.heldMiB.toFixed(1), packed.trainable.toLocaleString('en-US'), `${(packed.tokensPerSecond / plain.tokensPerSecond).toFixed(2)}x`]);
  rows.push([name, 'packed + LoRA r=8 all-linear', lora.tokensPerSecond.toFixed(0), (100 * lora.utilisation).toFixed(1), lora.stepSeconds.toFixed(2), lora.heldMiB.toFixed(1), lora.trainable.toLocaleString('en-US'), `${(lora.tokensPerSecond / plain.tokensPerSecond).toFixed(2)}x (step ${(packed.stepSeconds / lora.stepSeconds).toFixed(2)}x of full, memory ${(lora.heldMiB / packed.heldMiB).toFixed(2)}x)`]);
}
const head = ['model', 'layout', 'data tokens/s', 'row fill %', 's/step', 'tensor MiB', 'trainable', 'vs one per row'];
const widths = head.map((h, j) => Math.max(h.length, ...rows.map((r) => r[j].length)));
const line = (r: string[]) => `| ${r.map((c, j) => c.padEnd(widths[j])).join(' | ')} |`;
console.log([line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n'));
console.log(`\nbatch 4 rows, ${STEPS} timed steps after one warm-up step; tokens/s counts data tokens only (no padding).`);
