import { mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../lib/util/fs.js';
import { projectRoot } from '../lib/util/paths.js';

export interface KernelInstallOptions {
  /** Install for this user (the default unless running as root). */
  user?: boolean;
  /** Install under PREFIX/share/jupyter/kernels (a virtualenv, conda env or CI tree). */
  prefix?: string;
  /** The kernelspec's name (directory); "llmbox" unless given. */
  name?: string;
  /** Shown in Jupyter's kernel picker. */
  displayName?: string;
}

/** Jupyter's per-user data directory, as jupyter_core computes it. */
function userDataDir(): string {
  if (process.env.JUPYTER_DATA_DIR) return process.env.JUPYTER_DATA_DIR;
  if (process.platform === 'darwin') return join(homedir(), 'Library', 'Jupyter');
  if (process.platform === 'win32')
    return join(process.env.APPDATA ?? join(homedir(), 'AppData', 'Roaming'), 'jupyter');
  return join(process.env.XDG_DATA_HOME ?? join(homedir(), '.local', 'share'), 'jupyter');
}

/** Where the kernelspec goes: --prefix, else per user (non-root), else the system directory. */
export function kernelDir(opts: KernelInstallOptions = {}): string {
  const name = opts.name ?? 'llmbox';
  if (opts.prefix) return join(opts.prefix, 'share', 'jupyter', 'kernels', name);
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  if (opts.user || !root) return join(userDataDir(), 'kernels', name);
  return join('/usr/local/share/jupyter/kernels', name);
}

/** The kernel.json that starts this llmbox, under this Node, as a tslab kernel with llmbox preloaded. */
export function kernelSpec(displayName = 'llmbox (TypeScript)'): Record<string, unknown> {
  const bin = join(projectRoot(), 'bin', 'llmbox.js');
  return {
    argv: [process.execPath, bin, 'kernel', 'start', '--config-path', '{connection_file}'],
    display_name: displayName,
    language: 'typescript',
    metadata: { llmbox: { bin } },
  };
}

/** Writes the kernelspec; returns its directory. Jupyter needs no other step to list it. */
export function installKernel(opts: KernelInstallOptions = {}): string {
  const dir = kernelDir(opts);
  mkdirSync(dir, { recursive: true });
  writeFileAtomic(join(dir, 'kernel.json'), JSON.stringify(kernelSpec(opts.displayName), null, 2) + '\n');
  return dir;
}
