// Needs ../shared/data (the benchmark and training data sets): scripts/test.mjs skips this file without it.
import { execFileSync } from 'node:child_process';
import { createServer as createTcpServer, type Server } from 'node:net';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPython, sandboxDescription } from '../lib/eval/sandbox.js';
import { runCli } from './helpers/http.js';
import { STORIES, tmp } from './helpers/models.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'bin/llmbox.js');

/**
 * Escape attempts by generated code, each of which got out of the earlier Python-level guard: every
 * one must leave the host untouched. The checks are made from outside, on the host.
 */
describe('the code sandbox holds against escape attempts', () => {
  const host = tmp('llmbox-escape-');
  const sock = join(host, 'sock');
  let connections = 0;
  const servers: Server[] = [];
  let port = 0;
  beforeAll(async () => {
    writeFileSync(join(host, 'secret'), 's3cr3t');
    for (const listen of [(s: Server) => s.listen(sock), (s: Server) => s.listen(0, '127.0.0.1')]) {
      const s = createTcpServer((c) => {
        connections++;
        c.destroy();
      });
      await new Promise<void>((resolve) => listen(s).once('listening', () => resolve()));
      servers.push(s);
    }
    port = (servers[1].address() as { port: number }).port;
  });
  afterAll(() => servers.forEach((s) => s.close()));

  it('is an operating-system sandbox here (bubblewrap), not the Python guard alone', () => {
    expect(sandboxDescription()).toMatch(/^bubblewrap: new user, mount, PID, IPC, UTS, cgroup and network namespaces/);
  });

  const attempts: [string, string][] = [
    ['posix.system', `import posix\nposix.system("touch ${host}/pwned-posix; echo hi > /tmp/host-tmp-pwned")`],
    ['importlib.reload(os)', `import importlib, os\nimportlib.reload(os)\nos.system("touch ${host}/pwned-reload")`],
    ['ctypes libc.system', `import ctypes\nctypes.CDLL(None).system(b"touch ${host}/pwned-ctypes")`],
    [
      'ctypes fork + exec',
      `import ctypes, posix\nlibc = ctypes.CDLL(None)\nif libc.fork() == 0:\n    posix.execv("/bin/sh", ["sh", "-c", "touch ${host}/pwned-fork"])\nimport time; time.sleep(0.5)`,
    ],
    [
      'os.posix_spawn',
      `import os\nos.posix_spawn("/bin/sh", ["sh", "-c", "touch ${host}/pwned-spawn"], {})\nimport time; time.sleep(0.5)`,
    ],
    [
      'multiprocessing',
      `import multiprocessing\ndef f():\n    open("${host}/pwned-mp", "w").write("x")\nif __name__ == "__main__":\n    p = multiprocessing.Process(target=f); p.start(); p.join()`,
    ],
    [
      '__subclasses__ Popen',
      `P = [c for c in object.__subclasses__() if c.__name__ == "Popen"][0]\nP(["sh", "-c", "touch ${host}/pwned-subclasses"]).wait()`,
    ],
    [
      'write into the host folder and llmbox dist/',
      `for f in ["${host}/pwned-open", "${join(ROOT, 'dist', 'pwned')}", "/root/pwned", "/usr/pwned"]:\n    try:\n        open(f, "w").write("x")\n    except OSError:\n        pass`,
    ],
    [
      'truncate and replace host files',
      `import posix\nfor f in ["${host}/secret", "${join(ROOT, 'package.json')}"]:\n    try:\n        posix.truncate(f, 0)\n    except OSError:\n        pass\n    try:\n        posix.rename("/sandbox/program.py", f)\n    except OSError:\n        pass`,
    ],
  ];
  for (const [name, program] of attempts) {
    it(`${name}: nothing changes on the host`, async () => {
      const pkg = readFileSync(join(ROOT, 'package.json'), 'utf8');
      await runPython(program, { timeoutMs: 4000 });
      expect(readdirSync(host).sort()).toEqual(['secret', 'sock']);
      expect(readFileSync(join(host, 'secret'), 'utf8')).toBe('s3cr3t');
      expect(readFileSync(join(ROOT, 'package.json'), 'utf8')).toBe(pkg);
      expect(existsSync(join(ROOT, 'dist', 'pwned'))).toBe(false);
      expect(existsSync('/tmp/host-tmp-pwned')).toBe(false);
      expect(existsSync('/root/pwned')).toBe(false);
    });
  }

  it('reads no host secrets and sees no host files', async () => {
    const r = await runPython(
      `import os, sys\nread = []\nfor f in ["/etc/shadow", "/etc/passwd", "${host}/secret", "/root/.bashrc", "${join(ROOT, 'package.json')}"]:\n    try:\n        open(f).read()\n        read.append(f)\n    except OSError:\n        pass\nsys.stderr.write("READ [" + ",".join(read) + "] ROOT " + ",".join(sorted(os.listdir("/"))) + " ETC " + ",".join(sorted(os.listdir("/etc"))) + "\\n")\nsys.exit(1)`,
      { timeoutMs: 4000 },
    );
    expect(r.detail).toMatch(
      /^READ \[\] ROOT bin,dev,etc,lib,(lib64,)?proc,sandbox,sbin,tmp,usr ETC (alternatives,)?ld\.so\.cache(,localtime)?$/,
    );
  });

  it('connects to no host socket and has no network', async () => {
    const before = connections;
    const r = await runPython(
      `import _socket, sys\nfor fam, addr in [(_socket.AF_UNIX, "${sock}"), (_socket.AF_INET, ("127.0.0.1", ${port}))]:\n    s = _socket.socket(fam, _socket.SOCK_STREAM)\n    try:\n        s.connect(addr)\n        sys.stderr.write("CONNECTED\\n")\n    except OSError as e:\n        sys.stderr.write("REFUSED\\n")\nsys.exit(1)`,
      { timeoutMs: 4000 },
    );
    expect(r.detail).not.toMatch(/CONNECTED/);
    expect(r.detail).toMatch(/REFUSED/);
    expect(connections).toBe(before);
  });

  it('cannot signal the evaluator or anything outside its PID namespace', async () => {
    const victim = execFileSync('sh', ['-c', 'sleep 30 >/dev/null 2>&1 & echo $!'], { encoding: 'utf8' }).trim();
    try {
      await runPython(
        `import posix\nfor pid in [${process.pid}, ${victim}, 1, -1]:\n    try:\n        posix.kill(pid, 9)\n    except OSError:\n        pass`,
        { timeoutMs: 4000 },
      );
      expect(() => process.kill(Number(victim), 0)).not.toThrow();
    } finally {
      process.kill(Number(victim), 'SIGKILL');
    }
  });

  it('returns within its limit although a setsid grandchild holds stderr; no daemon outlives the call', async () => {
    const marker = `31.${Math.floor(Math.random() * 1e6)}`;
    const started = Date.now();
    const r = await runPython(
      `import os, time\nos.posix_spawn("/bin/sh", ["sh", "-c", "setsid sleep ${marker} & (setsid sh -c 'sleep ${marker}' </dev/null >/dev/null 2>&1 &)"], dict(os.environ))\ntime.sleep(60)`,
      { timeoutMs: 2000 },
    );
    const took = Date.now() - started;
    expect(r.status).toBe('timeout');
    // The limit, the kill and the reaping: seconds, not the 45 s the grandchild would hold stderr for.
    expect(took).toBeLessThan(2000 + 2500);
    await new Promise((res) => setTimeout(res, 300));
    // pgrep exits 1 when it finds nothing (and finds what runs: this test's own runner).
    expect(execFileSync('pgrep', ['-f', 'vitest'], { encoding: 'utf8' }).trim()).not.toBe('');
    expect(() => execFileSync('pgrep', ['-f', `sleep ${marker}`], { encoding: 'utf8' })).toThrow();
  });

  it('evaluation refuses to run generated code without an isolating sandbox unless allowed, and says so in results', async () => {
    const env = { LLMBOX_BWRAP: '/nonexistent/bwrap' };
    const refused = await runCli(
      BIN,
      ['eval', '-m', STORIES, '-d', 'humaneval', '--limit', '1', '--max-new-tokens', '4'],
      env,
    );
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/generated code runs only inside a sandbox[\s\S]*--allow-unsafe-code-execution/);
    const unsafe = await runCli(
      BIN,
      [
        'eval',
        '-m',
        STORIES,
        '-d',
        'humaneval',
        '--limit',
        '1',
        '--max-new-tokens',
        '4',
        '--allow-unsafe-code-execution',
        '--json',
      ],
      env,
    );
    expect(unsafe.code, unsafe.stderr).toBe(0);
    expect(unsafe.stderr).toMatch(/WITHOUT an isolating sandbox/);
    expect(JSON.parse(unsafe.stdout).fingerprint.sandbox).toMatch(/^UNSAFE/);
    const safe = await runCli(BIN, [
      'eval',
      '-m',
      STORIES,
      '-d',
      'humaneval',
      '--limit',
      '1',
      '--max-new-tokens',
      '4',
      '--json',
    ]);
    expect(JSON.parse(safe.stdout).fingerprint.sandbox).toMatch(/^bubblewrap/);
    expect(statSync(host).isDirectory()).toBe(true);
  });
});
