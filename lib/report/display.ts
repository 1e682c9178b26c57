import { escapeHtml } from './html-table.js';

/** One output area that is redrawn in place: progress bars, growing charts, streamed text. */
export interface LiveOutput {
  /** Replaces the area's content: an HTML string, or a value with a rich form (figure, table, result). */
  update(value: unknown): void;
}

/**
 * Where the library sends rich output. The library draws nothing itself: a front end (the Jupyter
 * kernel in kernel/) plugs a host in at start; without one, values are only returned.
 */
export interface DisplayHost {
  show(value: unknown): void;
  live(): LiveOutput;
}

let host: DisplayHost | null = null;

/** Plugs in (or, with null, removes) the front end that shows rich output. */
export function setDisplayHost(next: DisplayHost | null): void {
  host = next;
}

/** The front end that shows rich output, or null (a script, the CLI, a test). */
export function displayHost(): DisplayHost | null {
  return host;
}

/** Shows a value through the display host; returns false where there is none. */
export function show(value: unknown): boolean {
  if (!host) return false;
  host.show(value);
  return true;
}

/** A progress bar as HTML (the `<progress>` element, so no script is needed). */
export function progressHTML(label: string, done: number, total: number, detail = ''): string {
  const pct = total > 0 ? (100 * done) / total : 0;
  return `<div class="llmbox-progress"><progress value="${done}" max="${Math.max(total, 1)}" style="width:240px;vertical-align:middle"></progress> <code>${escapeHtml(label)}</code> ${done}/${total} (${pct.toFixed(0)}%) ${escapeHtml(detail)}</div>`;
}
