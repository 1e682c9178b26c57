import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface SandboxResult {
  status: 'passed' | 'failed' | 'timeout';
  /** The tail of stderr, for the samples file. */
  detail: string;
}

export interface SandboxOptions {
  timeoutMs?: number;
  memoryMb?: number;
  /** Python interpreter (LLMBOX_PYTHON, else python3). */
  python?: string;
}

/**
 * Runs before the program: turns off what generated code has no business doing (network sockets,
 * spawning processes, deleting files outside its folder) so that a mistake cannot reach the host.
 * It is a guard against accidents, not a security boundary; the process limits and the network
 * namespace below are the hard part.
 */
const GUARD = `
import builtins, os, shutil, socket, subprocess, sys
def _blocked(*a, **k):
    raise PermissionError("blocked in the llmbox sandbox")
socket.socket = _blocked
socket.create_connection = _blocked
for _name in ("system", "popen", "kill", "fork", "forkpty", "killpg", "remove", "removedirs", "rmdir", "unlink", "rename", "renames", "truncate", "putenv", "chdir", "chroot", "execv", "execve", "execvp", "spawnv"):
    if hasattr(os, _name): setattr(os, _name, _blocked)
shutil.rmtree = _blocked
shutil.move = _blocked
subprocess.Popen = _blocked
subprocess.run = _blocked
del _name, _blocked
`;

let isolation: string[] | undefined;
/** `unshare -rn` (a fresh user and network namespace: no network at all) where the kernel allows it. */
function networkIsolation(): string[] {
  if (isolation === undefined) {
    isolation = spawnSync('unshare', ['-rn', 'true']).status === 0 ? ['unshare', '-rn'] : [];
  }
  return isolation;
}

/** How generated code is contained on this machine, for results files. */
export function sandboxDescription(): string {
  return `separate python process, temp dir only, cpu/memory/file-size limits, guard module${networkIsolation().length ? ', network namespace (no network)' : ', network not isolated (unshare unavailable)'}`;
}

/**
 * Runs a Python program in a separate process, in a fresh temporary folder, with time, memory and
 * file-size limits and no network; passed means exit status 0.
 */
export function runPython(program: string, opts: SandboxOptions = {}): Promise<SandboxResult> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const memKb = (opts.memoryMb ?? 1024) * 1024;
  const dir = mkdtempSync(join(tmpdir(), 'llmbox-sandbox-'));
  writeFileSync(join(dir, 'guard.py'), GUARD);
  writeFileSync(join(dir, 'program.py'), program);
  const python = opts.python ?? process.env.LLMBOX_PYTHON ?? 'python3';
  const cpuSeconds = Math.ceil(timeoutMs / 1000) + 1;
  const script = `ulimit -v ${memKb}; ulimit -f 10240; ulimit -t ${cpuSeconds}; exec "$0" -I -c 'exec(open("guard.py").read()); exec(compile(open("program.py").read(), "program.py", "exec"))'`;
  const [cmd, ...pre] = [...networkIsolation(), 'sh'];
  return new Promise((resolve) => {
    const child = spawn(cmd, [...pre, '-c', script, python], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, TMPDIR: dir, PYTHONDONTWRITEBYTECODE: '1' },
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: true,
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-2000);
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
      resolve({ status: timedOut ? 'timeout' : code === 0 ? 'passed' : 'failed', detail: stderr.trim().split('\n').slice(-3).join('\n') });
    });
  });
}
