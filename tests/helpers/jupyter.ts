import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { join, resolve } from 'node:path';
import { tmp } from './models.js';

const ROOT = resolve(import.meta.dirname, '../..');

/** Installs the llmbox kernelspec under a fresh prefix; returns the prefix (JUPYTER_PATH is PREFIX/share/jupyter). */
export function kernelPrefix(): string {
  const prefix = tmp();
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'llmbox.js'), 'kernel', 'install', '--prefix', prefix], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`kernel install failed: ${r.stderr}`);
  return prefix;
}

/** `jupyter nbconvert --execute` of a notebook with the llmbox kernel installed under `prefix`, into `out`. */
export function executeNotebook(
  file: string,
  o: {
    out: string;
    prefix: string;
    timeoutSeconds: number;
    extra?: string[];
    cwd?: string;
    env?: Record<string, string>;
  },
): SpawnSyncReturns<string> {
  const args = ['nbconvert', '--to', 'notebook', '--execute', '--ExecutePreprocessor.kernel_name=llmbox'];
  args.push(`--ExecutePreprocessor.timeout=${o.timeoutSeconds}`, ...(o.extra ?? []), '--output-dir', o.out, file);
  const env = {
    ...process.env,
    ...o.env,
    JUPYTER_PATH: join(o.prefix, 'share', 'jupyter'),
    PYDEVD_DISABLE_FILE_VALIDATION: '1',
  };
  return spawnSync('jupyter', args, { encoding: 'utf8', env, cwd: o.cwd });
}
