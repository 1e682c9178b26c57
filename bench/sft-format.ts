/**
 * Does instruction tuning teach the format? Generates greedy replies to new instructions (written here,
 * not in the training files) in the Alpaca prompt style of the Dolly samples, with the base model and
 * with fine-tuned models, and counts replies that end on their own (EOS) rather than running on to the
 * token limit, and replies that open with story dialogue (a quote mark, as TinyStories text does)
 * or run on into a new "### Instruction" instead of answering.
 *
 *   npx tsx bench/sft-format.ts BASE_DIR FULL_DIR [LORA_ADAPTER_DIR]
 */
import { loadModel } from '../lib/models/load.js';
import { generate } from '../lib/models/generate.js';
import { loadAdapter } from '../lib/train/lora.js';

const INSTRUCTIONS = [
  'What is the capital of France?',
  'Give me three ideas for a birthday party.',
  'Why is the sky blue?',
  'How do I make a cup of tea?',
  'What is a noun?',
  'Name two animals that live in the sea.',
  'Tell me something about the moon.',
  'What should I pack for a trip to the beach?',
  'Explain what a computer does.',
  'What is your favorite color?',
  'How many legs does a spider have?',
  'Write a short greeting for a friend.',
];
const SYSTEM =
  'Below is an instruction that describes a task. Write a response that appropriately completes the request.';
const prompts = INSTRUCTIONS.map((q) => `${SYSTEM}\n\n### Instruction:\n${q}\n\n### Response:\n`);
const MAX = 96;

const [base, full, lora] = process.argv.slice(2);
const variants: [string, () => ReturnType<typeof loadModel>][] = [
  ['base stories260K', () => loadModel(base)],
  ['full fine-tuning', () => loadModel(full)],
];
if (lora)
  variants.push([
    'LoRA r=8',
    async () => {
      const lm = await loadModel(base);
      loadAdapter(lora, lm.model);
      return lm;
    },
  ]);

console.log(
  '| model | replies ending with EOS | mean reply tokens | replies opening with story dialogue | replies with "### Instruction" |',
);
console.log('|---|---|---|---|---|');
const samples: string[] = [];
for (const [name, load] of variants) {
  const lm = await load();
  const out = await generate(lm, prompts, { maxNewTokens: MAX, temperature: 0, stopAtBos: true });
  const eos = out.filter((o) => o.finishReason === 'stop').length;
  const story = out.filter((o) => /^\s*"/.test(o.text)).length;
  const runOn = out.filter((o) => o.text.includes('### Instruction')).length;
  const mean = out.reduce((a, o) => a + o.ids.length, 0) / out.length;
  console.log(
    `| ${name} | ${eos}/${out.length} | ${mean.toFixed(1)} | ${story}/${out.length} | ${runOn}/${out.length} |`,
  );
  samples.push(
    `${name}:\n${out
      .slice(0, 3)
      .map((o, i) => `  Q: ${INSTRUCTIONS[i]}\n  A: ${JSON.stringify(o.text.slice(0, 160))}`)
      .join('\n')}`,
  );
  lm.model.dispose();
}
console.log(`\n${samples.join('\n')}`);
