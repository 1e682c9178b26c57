import { Command, Option } from 'commander';
import { readConfig } from '../../models/config.js';
import { parameterShapes } from '../../models/llama.js';
import { gpuMemory, gpuTable, SETTING_ASSUMPTIONS } from '../../train/gpu-calc.js';
import { float, int, print } from '../options.js';
import { DEFAULTS } from '../../util/defaults.js';

export function gpuCalcCommand(program: Command): void {
  program
    .command('gpu-calc')
    .description('GPU memory for training (LLMBox paper Eq. 1 and related settings), or the minimum-GPU table')
    .option('-m, --model <dir>', "read parameters, layers, hidden size and vocabulary from the model's config.json")
    .option('--params <p>', 'parameters', float('--params', 0, Infinity, { minExclusive: true }))
    .option('--layers <l>', 'layers', int('--layers', 1))
    .option('--seq <s>', 'sequence length', int('--seq', 1), DEFAULTS.gpuCalc.seq)
    .option('--hidden <h>', 'hidden size', int('--hidden', 1))
    .option('--vocab <v>', 'vocabulary size', int('--vocab', 1))
    .option('--gpus <n>', 'GPUs', int('--gpus', 1), DEFAULTS.gpuCalc.gpus)
    .option('--batch <b>', 'sequences per GPU', int('--batch', 1), DEFAULTS.gpuCalc.batch)
    .addOption(
      new Option('--setting <s>', 'zero3 (Eq. 1), ddp, lora or qlora')
        .choices(['zero3', 'ddp', 'lora', 'qlora'])
        .default(DEFAULTS.gpuCalc.setting),
    )
    .option('--table', 'minimum GPUs for LLaMA-2 7B/13B/70B per setting on A100 80G and A6000 48G')
    .option('--json', 'print {"per_gpu_gib": x, ...}')
    .action((o) => {
      const note =
        'llmbox itself trains in float32 (tfjs): its weights take 4 bytes and activations twice the bf16 terms, so these figures are for bf16 trainers on GPUs.';
      if (o.table) {
        const rows = gpuTable({ seq: o.seq, batch: o.batch });
        const text = [
          `minimum GPUs (sequence ${o.seq}, batch ${o.batch} per GPU, fits in 95% of memory, GiB)`,
          'model          setting  gpu         gpus  per-GPU GiB',
          ...rows.map(
            (r) =>
              `${r.model.padEnd(14)} ${r.setting.padEnd(8)} ${r.gpu.padEnd(11)} ${String(r.gpus ?? '-').padStart(4)}  ${r.per_gpu_gib === null ? 'does not fit' : r.per_gpu_gib.toFixed(2)}`,
          ),
          ...Object.entries(SETTING_ASSUMPTIONS).map(([k, v]) => `${k}: ${v}`),
          note,
        ].join('\n');
        return print(!!o.json, { rows, assumptions: SETTING_ASSUMPTIONS, note }, text);
      }
      let { params, layers, hidden, vocab } = o as {
        params?: number;
        layers?: number;
        hidden?: number;
        vocab?: number;
      };
      if (o.model) {
        const cfg = readConfig(o.model);
        params = [...parameterShapes(cfg).values()].reduce((a, shape) => a + shape.reduce((x, y) => x * y, 1), 0);
        layers = cfg.numLayers;
        hidden = cfg.hiddenSize;
        vocab = cfg.vocabSize;
      }
      const r = gpuMemory({
        params: params!,
        layers: layers!,
        seq: o.seq,
        hidden: hidden!,
        vocab: vocab!,
        gpus: o.gpus,
        batch: o.batch,
        setting: o.setting,
      });
      const out = {
        per_gpu_gib: r.gib,
        per_gpu_bytes: r.bytes,
        model_states_gib: r.parts.states / 2 ** 30,
        activations_gib: r.parts.activations / 2 ** 30,
        params,
        trainable_params: r.trainable,
        setting: o.setting,
        assumptions: r.assumptions,
        note,
      };
      print(
        !!o.json,
        out,
        `per GPU: ${r.gib.toFixed(2)} GiB (model states ${out.model_states_gib.toFixed(2)}, activations ${out.activations_gib.toFixed(2)})\n${r.assumptions}\n${note}`,
      );
    });
}
