import { Command } from 'commander';
import { prepareOutputDir } from '../../util/fs.js';
import { writeRun } from '../../eval/evaluate.js';
import { mergeRuns } from '../../eval/merge.js';
import { printRun } from '../summary.js';

export function mergeCommand(program: Command): void {
  program
    .command('merge')
    .description('join the outputs of a run split with --shard i/n into one run (metrics recomputed from the samples)')
    .argument('<dirs...>', 'the --output folders of the shards')
    .requiredOption('--output <dir>', 'where the merged results and samples go')
    .option('--json', 'print the summary as llmbox eval --json does')
    .action((dirs: string[], o: { output: string; json?: boolean }) => {
      prepareOutputDir(o.output, '--output');
      const run = mergeRuns(dirs);
      run.files = writeRun(o.output, run, {
        started: Date.now(),
        limit: run.fingerprint.limit,
        batchSize: run.fingerprint.lm.batch_size ?? null,
      });
      printRun(run, !!o.json);
    });
}
