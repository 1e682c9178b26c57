import { Command, Option } from 'commander';
import { basename } from 'node:path';
import { LlmboxError } from '../../errors.js';
import { writeGgufModel, type GgufOutType } from '../../models/gguf.js';
import { loadModelOrAdapter } from '../../train/adapted.js';
import { engineOpts, print } from '../options.js';

export function exportCommand(program: Command): void {
  program
    .command('export')
    .description('write a model (with its adapter merged) as a GGUF file that llama.cpp, Ollama and LM Studio load')
    .requiredOption('-m, --model <spec>', 'model folder, shipped model name or hf:org/name')
    .option('--adapter <dir>', 'a PEFT LoRA adapter folder, merged into the weights first')
    .addOption(
      new Option(
        '--gguf <type>',
        'weight type of the matrices (norms stay f32; rows that are not whole 32-blocks fall back to f16)',
      )
        .choices(['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_1'])
        .makeOptionMandatory(),
    )
    .requiredOption('--output <file>', 'the .gguf file to write')
    .option('--json', 'print {"output", "type", "tensors", "bytes", "kept": [{"name", "type"}]}')
    .action(
      async (
        o: { model: string; adapter?: string; gguf: GgufOutType; output: string; json?: boolean },
        cmd: Command,
      ) => {
        if (!o.output.endsWith('.gguf'))
          throw new LlmboxError('the output must be a .gguf file', {
            field: '--output',
            fix: `e.g. --output ${basename(o.model)}-${o.gguf}.gguf`,
          });
        const loaded = await loadModelOrAdapter(o.model, o.adapter, engineOpts(cmd));
        if (!loaded.tokenizer)
          throw new LlmboxError('GGUF files carry the tokenizer: this model has none', {
            file: loaded.dir,
            fix: 'add tokenizer.json to the model folder',
          });
        const r = writeGgufModel(
          o.output,
          {
            config: loaded.model.config,
            raw: loaded.model.toRaw(),
            tokenizer: loaded.tokenizer,
            name: loaded.name ?? basename(loaded.dir),
          },
          o.gguf,
        );
        const kept = r.kept.length ? `; kept wider: ${r.kept.map((k) => `${k.name} (${k.type})`).join(', ')}` : '';
        print(
          !!o.json,
          { output: o.output, type: o.gguf, tensors: r.tensors, bytes: r.bytes, kept: r.kept },
          `wrote ${o.output}: ${r.tensors} tensors, ${(r.bytes / 2 ** 20).toFixed(2)} MiB, ${o.gguf}${kept}`,
        );
      },
    );
}
