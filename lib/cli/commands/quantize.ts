import { Command, Option } from 'commander';
import { copyFileSync, existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { LlmboxError } from '../../errors.js';
import { toHfConfig } from '../../models/config.js';
import { writeGgufModel, type GgufOutType } from '../../models/gguf.js';
import { loadModelOrAdapter } from '../../train/adapted.js';
import { prepareOutputDir, writeFileAtomic } from '../../util/fs.js';
import { engineOpts, print } from '../options.js';

const TOKENIZER_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'generation_config.json',
];

export function quantizeCommand(program: Command): void {
  program
    .command('quantize')
    .description(
      'write a quantized model folder (config.json, the tokenizer, model.gguf) that loads back with its weights as stored',
    )
    .requiredOption('-m, --model <spec>', 'model folder, shipped model name, hf:org/name or .gguf file')
    .option('--adapter <dir>', 'a PEFT LoRA adapter folder, merged into the weights first')
    .addOption(
      new Option('--to <type>', 'weight type of the matrices')
        .choices(['q8_0', 'q4_0', 'q4_1', 'f16', 'bf16'])
        .makeOptionMandatory(),
    )
    .requiredOption('--output <dir>', 'the folder to write')
    .option('--json', 'print {"output", "type", "tensors", "bytes", "kept"}')
    .action(
      async (o: { model: string; adapter?: string; to: GgufOutType; output: string; json?: boolean }, cmd: Command) => {
        prepareOutputDir(o.output, '--output');
        const loaded = await loadModelOrAdapter(o.model, o.adapter, engineOpts(cmd));
        if (!loaded.tokenizer)
          throw new LlmboxError('the quantized folder carries the tokenizer: this model has none', {
            file: loaded.dir,
            fix: 'add tokenizer.json to the model folder',
          });
        const cfg = loaded.model.config;
        const r = writeGgufModel(
          join(o.output, 'model.gguf'),
          {
            config: cfg,
            raw: loaded.model.toRaw(),
            tokenizer: loaded.tokenizer,
            name: loaded.name ?? basename(loaded.dir),
          },
          o.to,
        );
        // transformers reads this layout too: config.json names the GGUF file.
        writeFileAtomic(
          join(o.output, 'config.json'),
          JSON.stringify(
            {
              ...toHfConfig(cfg),
              gguf_file: 'model.gguf',
              quantization_config: { quant_method: 'gguf', weight_type: o.to },
            },
            null,
            2,
          ) + '\n',
        );
        const from = existsSync(join(loaded.dir, 'tokenizer.json')) ? loaded.dir : null;
        if (from)
          for (const f of TOKENIZER_FILES)
            if (existsSync(join(from, f))) copyFileSync(join(from, f), join(o.output, f));
        if (!existsSync(join(o.output, 'tokenizer.json')))
          writeFileAtomic(join(o.output, 'tokenizer.json'), JSON.stringify(loaded.tokenizer.definition));
        print(
          !!o.json,
          { output: o.output, type: o.to, tensors: r.tensors, bytes: r.bytes, kept: r.kept },
          `wrote ${o.output} (${r.tensors} tensors, ${(r.bytes / 2 ** 20).toFixed(2)} MiB, ${o.to}${r.kept.length ? `; ${r.kept.length} matrices kept in f16` : ''})`,
        );
      },
    );
}
