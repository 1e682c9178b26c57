import { Command } from 'commander';
import { GROUPS, TASKS } from '../../eval/tasks/index.js';
import { print } from '../options.js';
import { cotModes } from '../../eval/cot/index.js';

export function tasksCommand(program: Command): void {
  program
    .command('tasks')
    .description('list the evaluation tasks and groups')
    .option('--json', 'print [{"name", "methods", "default_method", "shots", "group", "cot"}]')
    .action((o: { json?: boolean }) => {
      const groupOf = (t: string) => Object.values(GROUPS).find((g) => g.tasks.includes(t))?.name ?? null;
      const list = Object.values(TASKS).map((t) => ({
        name: t.name,
        methods: t.methods,
        default_method: t.defaultMethod,
        shots: t.defaultShots,
        group: groupOf(t.name),
        cot: cotModes(t),
      }));
      print(
        !!o.json,
        list,
        list
          .map((t) =>
            `${t.name.padEnd(48)} ${t.methods.join('/').padEnd(9)} ${String(t.shots).padStart(2)}-shot  ${(t.group ?? '').padEnd(10)}${t.cot.length ? ` cot: ${t.cot.join('/')}` : ''}`.trimEnd(),
          )
          .join('\n'),
      );
    });
}
