/**
 * Generated code runs only inside an operating-system sandbox: bubblewrap with new user, mount,
 * PID, IPC, UTS, cgroup and network namespaces, as the unprivileged host user nobody when llmbox
 * runs as root; the system's /usr read-only, a fresh folder the only writable place, no host
 * sockets or files, no network, rlimits on CPU, memory, file size and processes. The time limit
 * kills the PID namespace, so nothing the program started survives the call.
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  chownSync,
  existsSync,
  lstatSync,
  mkdtempSync,
  readlinkSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { LlmboxError } from '../errors.js';
import { DEFAULTS } from '../util/defaults.js';

export interface SandboxResult {
  status: 'passed' | 'failed' | 'timeout';
  /** The tail of stderr, for the samples file. */
  detail: string;
  /** What the program printed (its last 4,000 characters). */
  output: string;
}

export interface SandboxOptions {
  timeoutMs?: number;
  memoryMb?: number;
  /** Python interpreter (LLMBOX_PYTHON, else python3). */
  python?: string;
}

/**
 * Runs before the program, inside the sandbox: a second line that turns off what generated code has
 * no business doing (sockets, spawning, deleting). Not a boundary (Python can undo it); the
 * namespaces are.
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

/** Seconds between the time limit and the call's return, at most (the kill and the reaping). */
const GRACE_MS = 1000;
/** The unprivileged host user the sandbox runs as when llmbox runs as root. */
const NOBODY = 65534;

interface Isolation {
  /** Command prefix that runs a program inside the sandbox, given the writable folder. */
  prefix(dir: string, python: string): string[];
  /** The sandbox runs as the host's nobody (its folder must be nobody's). */
  asNobody: boolean;
  description: string;
}

let probed: Isolation | null | undefined;
let warnedUnsafe = false;

/** bwrap's view of the root: /usr read-only, the merged-/usr links, the linker cache; nothing else of the host. */
function systemBinds(python: string): string[] {
  const args = ['--ro-bind', '/usr', '/usr'];
  for (const p of ['/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32']) {
    if (!existsSync(p)) continue;
    args.push(...(lstatSync(p).isSymbolicLink() ? ['--symlink', readlinkSync(p), p] : ['--ro-bind', p, p]));
  }
  for (const f of ['/etc/ld.so.cache', '/etc/alternatives', '/etc/localtime'])
    if (existsSync(f)) args.push('--ro-bind', f, f);
  // An interpreter outside /usr (a virtualenv, conda) brings its own prefix, read-only.
  const real = realpathSync(python);
  if (!real.startsWith('/usr/')) args.push('--ro-bind', dirname(dirname(real)), dirname(dirname(real)));
  return args;
}

function which(cmd: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** Whether bubblewrap can make its namespaces here (it cannot in some containers), probed once. */
function isolation(python: string): Isolation | null {
  if (probed !== undefined) return probed;
  probed = null;
  // LLMBOX_BWRAP names the binary (where it is not on the PATH).
  const bwrap = process.env.LLMBOX_BWRAP ?? which('bwrap');
  if (!bwrap || !existsSync(bwrap)) return probed;
  // As root, the sandbox runs as the host's nobody; where nobody cannot reach the interpreter (a
  // Python under /root), as the invoking user, still without capabilities and with /usr read-only.
  const users = process.getuid?.() === 0 && which('setpriv') ? [true, false] : [false];
  for (const asNobody of users) {
    const user = asNobody
      ? ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--inh-caps=-all']
      : [];
    const prefix = (dir: string, py: string) => [
      ...user,
      bwrap,
      '--die-with-parent',
      '--new-session',
      '--unshare-all',
      '--cap-drop',
      'ALL',
      ...systemBinds(py),
      '--proc',
      '/proc',
      '--dev',
      '/dev',
      '--tmpfs',
      '/tmp',
      '--bind',
      dir,
      '/sandbox',
      '--chdir',
      '/sandbox',
      '--hostname',
      'sandbox',
      '--',
    ];
    const dir = mkdtempSync(join(tmpdir(), 'llmbox-sandbox-probe-'));
    if (asNobody) chownSync(dir, NOBODY, NOBODY);
    const argv = prefix(dir, python);
    const probe = spawnSync(argv[0], [...argv.slice(1), python, '-c', 'pass'], {
      env: { PATH: '/usr/bin:/bin' },
      encoding: 'utf8',
    });
    rmSync(dir, { recursive: true, force: true });
    if (probe.status === 0) {
      const who = asNobody ? 'as the host user nobody' : 'as the invoking user without capabilities';
      probed = {
        prefix,
        asNobody,
        description: `bubblewrap: new user, mount, PID, IPC, UTS, cgroup and network namespaces, /usr read-only, ${who}; rlimits`,
      };
      return probed;
    }
    if (process.env.LLMBOX_DEBUG === '1')
      process.stderr.write(`llmbox: bubblewrap probe failed: ${probe.stderr || probe.error}\n`);
  }
  return probed;
}

/** LLMBOX_ALLOW_UNSAFE_CODE=1 (or --allow-unsafe-code-execution): run generated code without an isolating sandbox. */
export function unsafeCodeAllowed(): boolean {
  return process.env.LLMBOX_ALLOW_UNSAFE_CODE === '1';
}

/** How generated code is contained on this machine (for results); an error when it cannot be and that was not allowed. */
export function sandboxDescription(python = defaultPython()): string {
  const iso = isolation(python);
  if (iso) return iso.description;
  if (unsafeCodeAllowed()) {
    if (!warnedUnsafe)
      process.stderr.write(
        'llmbox: warning: generated code runs WITHOUT an isolating sandbox (--allow-unsafe-code-execution)\n',
      );
    warnedUnsafe = true;
    return 'UNSAFE: no isolating sandbox (bubblewrap unavailable); generated code ran as a plain process with rlimits, by --allow-unsafe-code-execution';
  }
  throw new LlmboxError('generated code runs only inside a sandbox, and bubblewrap cannot create one here', {
    field: '--allow-unsafe-code-execution',
    fix: 'install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap), or accept the risk with --allow-unsafe-code-execution (LLMBOX_ALLOW_UNSAFE_CODE=1)',
  });
}

/** LLMBOX_PYTHON, else the system's /usr/bin/python3 (reachable inside the sandbox), else python3 on the PATH. */
function defaultPython(): string {
  const py = process.env.LLMBOX_PYTHON ?? (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');
  return py.includes('/') ? py : (which(py) ?? py);
}

/**
 * Runs a Python program in the sandbox, with time, memory, file-size and process limits; passed
 * means exit status 0. Returns within the time limit plus about a second, whatever the program
 * started.
 */
export function runPython(program: string, opts: SandboxOptions = {}): Promise<SandboxResult> {
  const python = opts.python ?? defaultPython();
  sandboxDescription(python);
  const iso = isolation(python);
  const timeoutMs = opts.timeoutMs ?? DEFAULTS.sandbox.timeoutMs;
  const memKb = (opts.memoryMb ?? DEFAULTS.sandbox.memoryMb) * 1024;
  const dir = mkdtempSync(join(tmpdir(), 'llmbox-sandbox-'));
  writeFileSync(join(dir, 'guard.py'), GUARD);
  writeFileSync(join(dir, 'program.py'), program);
  if (iso?.asNobody) chownSync(dir, NOBODY, NOBODY);
  const cpuSeconds = Math.ceil(timeoutMs / 1000) + 1;
  // A process limit where it counts only the sandbox's own (host user nobody; dash spells it -p).
  const nproc = iso?.asNobody ? 'ulimit -p 512 2>/dev/null || ulimit -u 512; ' : '';
  const script = `ulimit -v ${memKb}; ulimit -f 10240; ulimit -t ${cpuSeconds}; ${nproc}exec "$0" -I -c 'exec(open("guard.py").read()); exec(compile(open("program.py").read(), "program.py", "exec"))'`;
  const argv = [...(iso ? iso.prefix(dir, python) : []), 'sh', '-c', script, python];
  const home = iso ? '/sandbox' : dir;
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), {
      cwd: dir,
      env: { PATH: '/usr/bin:/bin', HOME: home, TMPDIR: home, PYTHONDONTWRITEBYTECODE: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let stderr = '',
      stdout = '',
      timedOut = false,
      done = false;
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-2000);
    });
    child.stdout.on('data', (d: Buffer) => {
      stdout = (stdout + d.toString()).slice(-4000);
    });
    const killAll = () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    };
    const finish = (code: number | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(grace);
      // A process that escaped the group but holds stderr open must not hold up the call.
      child.stderr.destroy();
      child.stdout.destroy();
      rmSync(dir, { recursive: true, force: true });
      resolve({
        status: timedOut ? 'timeout' : code === 0 ? 'passed' : 'failed',
        detail: stderr.trim().split('\n').slice(-3).join('\n'),
        output: stdout,
      });
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killAll();
    }, timeoutMs);
    const grace = setTimeout(() => {
      timedOut = true;
      killAll();
      finish(null);
    }, timeoutMs + GRACE_MS);
    let stdoutEnded = false;
    child.stdout.on('end', () => (stdoutEnded = true));
    child.on('exit', (code) => {
      // The sandbox's PID namespace dies with its first process; the host fallback kills its group.
      killAll();
      // What the program printed may still be in the pipe: read it, waiting a moment at most.
      if (stdoutEnded) return finish(code);
      child.stdout.once('end', () => finish(code));
      setTimeout(() => finish(code), 200).unref();
    });
  });
}
