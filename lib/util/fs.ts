import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { LlmboxError } from '../errors.js';

/** Writes a file so that readers see either the old or the whole new content, never a torn one. */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  writeFileAtomicWith(file, (fd) => writeSync(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data));
}

/** As writeFileAtomic, for content written in pieces (large files need not be one buffer). */
export function writeFileAtomicWith(file: string, write: (fd: number) => void): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${Date.now()}`;
  const fd = openSync(tmp, 'w');
  try {
    write(fd);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, file);
}

/**
 * Makes an output folder, or says why it cannot be one, before any work is done: a path through a
 * file (ENOTDIR), no permission, a read-only or kernel pseudo-filesystem (Node's recursive mkdir
 * does not return under /proc).
 */
export function prepareOutputDir(dir: string, flag: string): string {
  const abs = resolve(dir);
  if (/^\/(proc|sys|dev)(\/|$)/.test(abs))
    throw new LlmboxError(`${dir} is on a kernel pseudo-filesystem`, {
      field: flag,
      fix: 'write results to an ordinary folder',
    });
  try {
    mkdirSync(abs, { recursive: true });
    const probe = join(abs, `.llmbox-write-test-${process.pid}`);
    writeFileSync(probe, '');
    rmSync(probe);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOTDIR' || code === 'EEXIST'
        ? 'a file stands where a folder is needed'
        : code === 'EACCES' || code === 'EPERM'
          ? 'no permission to write there'
          : code === 'EROFS'
            ? 'the filesystem is read-only'
            : (e as Error).message;
    throw new LlmboxError(`cannot write to ${dir}: ${why}`, { field: flag, fix: 'choose a folder you can write to' });
  }
  return abs;
}
