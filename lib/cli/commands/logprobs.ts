import { Command } from 'commander';
import { LlmboxError } from '../../errors.js';
import { loadModelOrAdapter } from '../../train/adapted.js';
import { nextTokenLogprobs } from '../../models/score.js';
import { engineOpts, idList, print } from '../options.js';

export function logprobsCommand(program: Command): void {
  program
    .command('logprobs')
    .description('log-probability of every next token under teacher forcing')
    .requiredOption('-m, --model <dir>', 'model folder (Hugging Face layout)')
    .option('--text <text>', 'text to score (tokenized with BOS)')
    .option(
      '--adapter <dir>',
      'a PEFT LoRA adapter folder to apply to the model (a PEFT folder given as -m finds its base itself)',
    )
    .option('--ids <ids>', 'comma-separated token ids', idList)
    .option('--json', 'print {"ids", "logprobs"}')
    .action(
      async (o: { model: string; adapter?: string; text?: string; ids?: number[]; json?: boolean }, cmd: Command) => {
        if ((o.text === undefined) === (o.ids === undefined)) {
          throw new LlmboxError('give exactly one of --text and --ids', { field: '--text/--ids' });
        }
        const loaded = await loadModelOrAdapter(o.model, o.adapter, engineOpts(cmd));
        let ids = o.ids;
        if (!ids) {
          if (!loaded.tokenizer)
            throw new LlmboxError('--text needs a tokenizer', { file: `${o.model}/tokenizer.json`, fix: 'use --ids' });
          ids = loaded.tokenizer.encode(o.text!);
        }
        const lp = await nextTokenLogprobs(loaded.model, ids);
        const lines = lp.map((x, i) => {
          const tok = loaded.tokenizer?.idToToken(ids![i + 1]) ?? '';
          return `${String(ids![i + 1]).padStart(7)}  ${x.toFixed(6).padStart(11)}  ${JSON.stringify(tok)}`;
        });
        const total = lp.reduce((a, b) => a + b, 0);
        print(
          !!o.json,
          { ids, logprobs: lp },
          ['     id      logprob  token', ...lines, `sum ${total.toFixed(6)}`].join('\n'),
        );
      },
    );
}
