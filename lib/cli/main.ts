import { Command, CommanderError, Option } from 'commander';
import { LlmboxError } from '../errors.js';
import { envCommand } from './commands/env.js';
import { generateCommand } from './commands/generate.js';
import { logprobsCommand } from './commands/logprobs.js';
import { evalCommand } from './commands/eval.js';
import { mergeCommand } from './commands/merge.js';
import { tasksCommand } from './commands/tasks.js';
import { trainCommand } from './commands/train.js';
import { mergeTokenizerCommand } from './commands/merge-tokenizer.js';
import { serveCommand } from './commands/serve.js';
import { kernelCommand } from './commands/kernel.js';
import { gpuCalcCommand } from './commands/gpu-calc.js';
import { pullCommand } from './commands/pull.js';
import { exportCommand } from './commands/export.js';
import { quantizeCommand } from './commands/quantize.js';
import { scoreRmCommand } from './commands/score-rm.js';
import { int, packageVersion } from './options.js';

/** The llmbox command line: one file per command in commands/, shared option parsers in options.ts. */
export function buildCli(): Command {
  const program = new Command('llmbox')
    // Parser errors follow the same contract as llmbox's own: "llmbox: ..." and exit code 2 (see main).
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`llmbox: ${text.replace(/^error: /, '')}`) })
    .description('Train, use and evaluate large language models')
    .version(packageVersion())
    .addOption(new Option('--backend <name>', 'tfjs backend').choices(['tensorflow', 'webgpu', 'wasm', 'cpu']))
    .addOption(new Option('--threads <n>', 'compute threads (BLAS)').argParser(int('--threads', 1)))
    .option(
      '--load-in-8bit',
      'hold the linear weights as q8_0 outside the tensor heap (inference reads them in 8 bits)',
    )
    .option('--load-in-4bit', 'hold the linear weights in 4 bits (--quant, q4_0 unless given)')
    .addOption(
      new Option(
        '--quant <type>',
        'the 4-bit type of --load-in-4bit: q4_0, q4_1 (packed) or nf4 (NormalFloat)',
      ).choices(['q4_0', 'q4_1', 'nf4']),
    )
    .option(
      '--no-mmap',
      'read the weight files into memory instead of mapping them (for files that may be rewritten in place while loaded)',
    );
  for (const register of [
    envCommand,
    generateCommand,
    logprobsCommand,
    evalCommand,
    mergeCommand,
    tasksCommand,
    trainCommand,
    mergeTokenizerCommand,
    serveCommand,
    kernelCommand,
    gpuCalcCommand,
    pullCommand,
    exportCommand,
    quantizeCommand,
    scoreRmCommand,
  ])
    register(program);
  return program;
}

/**
 * Exit codes: 0 done (and --help, --version), 2 the user's input is wrong (a bad flag, file or
 * config: the message names it and the fix), 1 anything else (the stack only with LLMBOX_DEBUG=1).
 */
export async function main(argv = process.argv): Promise<void> {
  try {
    await buildCli().parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      // Commander has printed its message already.
      process.exitCode = e.code === 'commander.helpDisplayed' || e.code === 'commander.version' ? 0 : 2;
    } else if (e instanceof LlmboxError) {
      process.stderr.write(`llmbox: ${e.message}\n`);
      process.exitCode = 2;
    } else {
      const err = e as Error;
      process.stderr.write(`llmbox: ${process.env.LLMBOX_DEBUG === '1' ? (err.stack ?? err) : (err.message ?? err)}\n`);
      process.exitCode = 1;
    }
  }
}
