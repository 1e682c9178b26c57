import { Command } from 'commander';
import { loadModelOrAdapter } from '../../train/adapted.js';
import { mergeTokenizer } from '../../train/vocab.js';
import { engineOpts, int, print } from '../options.js';

export function mergeTokenizerCommand(program: Command): void {
  program
    .command('merge-tokenizer')
    .description(
      'learn new BPE tokens from a corpus, add them to the tokenizer and resize the embeddings (continual pre-training)',
    )
    .requiredOption('-m, --model <dir>', 'model folder (or a shipped model name)')
    .requiredOption('--input <files...>', 'corpus text files (one document or paragraph per line)')
    .requiredOption('--vocab <n>', 'how many tokens to add', int('--vocab', 1))
    .requiredOption('--output <dir>', 'where the expanded model goes')
    .option('--json', 'print {"added": [...], "old_vocab", "new_vocab", "tokens_before", "tokens_after"}')
    .action(
      async (o: { model: string; input: string[]; vocab: number; output: string; json?: boolean }, cmd: Command) => {
        const loaded = await loadModelOrAdapter(o.model, undefined, engineOpts(cmd));
        const r = mergeTokenizer(loaded, o.input, o.vocab, o.output);
        const summary = {
          added: r.added,
          old_vocab: r.oldVocab,
          new_vocab: r.newVocab,
          tokens_before: r.tokensBefore,
          tokens_after: r.tokensAfter,
          output: o.output,
        };
        const text = `added ${r.added.length} tokens (${r.oldVocab} -> ${r.newVocab}); the corpus takes ${r.tokensAfter.toLocaleString('en-US')} tokens instead of ${r.tokensBefore.toLocaleString('en-US')} (${((100 * (r.tokensBefore - r.tokensAfter)) / r.tokensBefore).toFixed(1)}% fewer)\nfirst new tokens: ${r.added
          .slice(0, 12)
          .map((a) => JSON.stringify(a.token))
          .join(' ')}\nsaved to ${o.output}`;
        print(!!o.json, summary, text);
      },
    );
}
