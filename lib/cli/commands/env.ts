import { Command } from 'commander';
import { initEngine } from '../../engine/index.js';
import { engineOpts, packageVersion, print } from '../options.js';

export function envCommand(program: Command): void {
  program
    .command('env')
    .description('backend, threads, native add-on and versions')
    .option('--json', 'machine-readable output')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const info = await initEngine(engineOpts(cmd));
      const out = { llmbox: packageVersion(), ...info };
      const native = info.native.enabled
        ? `on (${info.native.blas})`
        : `off (${info.native.reason ?? 'not available on this backend'})`;
      print(
        !!o.json,
        out,
        [
          `llmbox   ${out.llmbox}`,
          `backend  ${info.backend}`,
          `threads  ${info.threads}`,
          `native   ${native}`,
          ...(info.adapter
            ? [
                `adapter  ${info.adapter.description || info.adapter.device} (${info.adapter.vendor}, ${info.adapter.architecture}${info.adapter.software ? ', software' : ''}${info.adapter.f16 ? ', shader-f16' : ''})`,
                `limits   storage buffer ${(info.adapter.limits.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB, workgroup memory ${info.adapter.limits.maxComputeWorkgroupStorageSize} B, ${info.adapter.limits.maxComputeInvocationsPerWorkgroup} invocations`,
              ]
            : []),
          `tfjs     ${info.versions.tfjs}`,
          `node     ${info.versions.node}`,
        ].join('\n'),
      );
    });
}
