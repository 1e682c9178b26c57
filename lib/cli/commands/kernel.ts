import { Command } from 'commander';
import { existsSync } from 'node:fs';
import { LlmboxError } from '../../errors.js';
import { installKernel, kernelSpec } from '../../../kernel/install.js';
import { print } from '../options.js';

export function kernelCommand(program: Command): void {
  const kernel = program.command('kernel').description('the llmbox Jupyter kernel (tslab with llm preloaded)');
  kernel
    .command('install')
    .description('write the "llmbox" kernelspec so JupyterLab, Notebook, nbconvert and VS Code offer the kernel')
    .option('--user', 'install for this user (default unless root)')
    .option('--prefix <dir>', 'install under DIR/share/jupyter/kernels (a virtualenv, conda env or CI tree)')
    .option('--name <name>', 'kernelspec name', 'llmbox')
    .option('--json', 'print {"dir": ..., "argv": [...]}')
    .action((o: { user?: boolean; prefix?: string; name: string; json?: boolean }) => {
      const dir = installKernel({ user: o.user, prefix: o.prefix, name: o.name });
      print(
        !!o.json,
        { dir, ...kernelSpec() },
        `installed kernelspec ${o.name} in ${dir}\nstart it with: jupyter lab  (then pick "llmbox (TypeScript)")`,
      );
    });
  kernel
    .command('start')
    .description('start the kernel (Jupyter runs this from the kernelspec)')
    .requiredOption('--config-path <file>', 'the connection file Jupyter passes')
    .action(async (o: { configPath: string }) => {
      if (!existsSync(o.configPath))
        throw new LlmboxError('connection file not found', {
          file: o.configPath,
          field: '--config-path',
          fix: 'Jupyter passes this file; start the kernel from Jupyter (after llmbox kernel install)',
        });
      const { startKernel } = await import('../../../kernel/start.js');
      await startKernel(o.configPath);
    });
}
