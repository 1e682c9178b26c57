import { Command } from 'commander';
import { pull, resolveHubModel } from '../../hub/pull.js';
import { isHubSpec } from '../../hub/repo.js';
import { print } from '../options.js';
import { pullProgress } from '../progress.js';

export function pullCommand(program: Command): void {
  program
    .command('pull')
    .description(
      'download a model or data set from the Hugging Face Hub into its cache (HF_ENDPOINT, HF_TOKEN, HF_HUB_CACHE, HF_HUB_OFFLINE)',
    )
    .argument('<repo>', 'org/name[@revision] (a model), datasets/org/name[@revision] (a data set)')
    .option('--dataset', 'the repository is a data set (as datasets/org/name)')
    .option('--include <globs...>', 'only these files (e.g. "*.json" "*.safetensors")')
    .option('--exclude <globs...>', 'leave these files out')
    .option('--json', 'print {"dir", "repo", "commit", "files": [...], "bytes_downloaded"}')
    .action(async (repo: string, o: { dataset?: boolean; include?: string[]; exclude?: string[]; json?: boolean }) => {
      const r = await pull(repo, {
        type: o.dataset ? 'dataset' : undefined,
        include: o.include,
        exclude: o.exclude,
        onProgress: pullProgress(repo),
      });
      const fetched = r.files.filter((f) => f.downloaded).length;
      print(
        !!o.json,
        { dir: r.dir, repo: r.repo, commit: r.commit, files: r.files, bytes_downloaded: r.bytesDownloaded },
        `${r.repo} (commit ${r.commit.slice(0, 12)}): ${r.files.length} files, ${fetched} downloaded (${(r.bytesDownloaded / 2 ** 20).toFixed(1)} MiB), ${r.files.length - fetched} already in the cache\n${r.dir}`,
      );
    });

  // Every command's -m hf:org/name is pulled here, with a progress bar, before the command loads it
  // (the load then finds it resolved in this process).
  program.hook('preAction', async (_program, command) => {
    const model = command.getOptionValue('model');
    if (typeof model === 'string' && isHubSpec(model))
      await resolveHubModel(model, { onProgress: pullProgress(model) });
  });
}
