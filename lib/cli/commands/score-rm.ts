import { Command } from 'commander';
import { LlmboxError } from '../../errors.js';
import { loadModel } from '../../models/load.js';
import { preferenceRecords } from '../../train/pairs.js';
import { rewardsOf } from '../../train/reward.js';
import { engineOpts, int, print } from '../options.js';

export function scoreRmCommand(program: Command): void {
  program
    .command('score-rm')
    .description("a reward model's score of a response, or its accuracy on preference pairs")
    .requiredOption(
      '-m, --model <dir>',
      'a reward model folder (LlamaForSequenceClassification, e.g. from train --stage rm)',
    )
    .option('--prompt <text>', 'the user turn')
    .option('--response <text>', "the assistant's reply to score")
    .option('--dataset <files...>', 'preference pairs: report how often the chosen reply scores higher')
    .option('--dataset-dir <dir>', 'folder with a dataset_info.json for dataset names')
    .option('--limit <n>', 'score the first N pairs', int('--limit', 1))
    .option('--batch-size <n>', 'sequences per forward pass', int('--batch-size', 1), 8)
    .option(
      '--max-length <n>',
      'tokens per sequence, cut as training cuts them (default 512 or the context)',
      int('--max-length', 2),
    )
    .option('--json', 'print {"reward"} or {"accuracy", "margin", "pairs"}')
    .action(async (o, cmd: Command) => {
      if (!o.dataset && (o.prompt === undefined || o.response === undefined))
        throw new LlmboxError('give --prompt and --response, or --dataset with preference pairs', {
          field: '--dataset',
        });
      const loaded = await loadModel(o.model, engineOpts(cmd));
      if (!loaded.model.params.has('score.weight'))
        throw new LlmboxError('not a reward model: no score.weight', {
          file: `${o.model}/model.safetensors`,
          field: 'score.weight',
          fix: 'train one with llmbox train --stage rm',
        });
      if (!o.dataset) {
        const [reward] = await rewardsOf(
          loaded,
          [{ prompt: [{ role: 'user', content: o.prompt }], response: o.response }],
          {
            maxLength: o.maxLength as number | undefined,
          },
        );
        return print(!!o.json, { reward }, `reward ${reward.toFixed(4)}`);
      }
      let pairs = await preferenceRecords({ datasets: o.dataset, dataDir: o.datasetDir });
      if (o.limit) pairs = pairs.slice(0, o.limit);
      const chosen = await rewardsOf(
        loaded,
        pairs.map((p) => ({ prompt: p.prompt, response: p.chosen })),
        { batchSize: o.batchSize as number, maxLength: o.maxLength as number | undefined },
      );
      const rejected = await rewardsOf(
        loaded,
        pairs.map((p) => ({ prompt: p.prompt, response: p.rejected })),
        { batchSize: o.batchSize as number, maxLength: o.maxLength as number | undefined },
      );
      const diffs = chosen.map((c, i) => c - rejected[i]);
      const accuracy = diffs.filter((d) => d > 0).length / diffs.length;
      const margin = diffs.reduce((a, b) => a + b, 0) / diffs.length;
      print(
        !!o.json,
        { accuracy, margin, pairs: diffs.length },
        `chosen scored higher on ${(100 * accuracy).toFixed(1)}% of ${diffs.length} pairs; mean margin ${margin.toFixed(4)}`,
      );
    });
}
