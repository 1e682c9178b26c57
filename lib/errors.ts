/**
 * Errors a user can act on: each names the file (or input), the field, and what to do about it.
 */
export class LlmboxError extends Error {
  readonly file?: string;
  readonly field?: string;
  readonly fix?: string;
  /** The message without the file, field and fix lines (what a wrapper prefixes). */
  readonly reason: string;

  constructor(message: string, where: { file?: string; field?: string; fix?: string } = {}) {
    const parts = [message];
    if (where.file) parts.push(`file: ${where.file}`);
    if (where.field) parts.push(`field: ${where.field}`);
    if (where.fix) parts.push(`fix: ${where.fix}`);
    super(parts.join('\n  '));
    this.name = 'LlmboxError';
    this.reason = message;
    this.file = where.file;
    this.field = where.field;
    this.fix = where.fix;
  }
}
