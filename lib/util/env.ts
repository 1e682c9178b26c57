import { LlmboxError } from '../errors.js';

/** A secret from the environment (keys are never flags or files): an error naming the variable and the flag when it is unset. */
export function envSecret(name: string, flag: string): string {
  const v = process.env[name];
  if (!v)
    throw new LlmboxError(`environment variable ${name} is not set`, {
      field: flag,
      fix: `export ${name}=... (keys are read from the environment only), or name another variable with ${flag}`,
    });
  return v;
}
