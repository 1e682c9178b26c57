import { existsSync } from 'node:fs';
import { LlmboxError } from '../errors.js';

/** The flags every headless launch uses: no sandbox (containers, CI), no GPU, no network chatter. */
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-dev-shm-usage',
];

const CANDIDATES = [
  '/usr/bin/chromium',
  '/usr/bin/chromium-browser',
  '/usr/bin/google-chrome',
  '/usr/bin/google-chrome-stable',
  '/Applications/Google Chrome.app/Contents/MacOS/Google Chrome',
  '/Applications/Chromium.app/Contents/MacOS/Chromium',
];

/** A Chromium or Chrome executable: LLMBOX_CHROMIUM, else the usual install paths; null when none. */
export function findChromium(): string | null {
  const env = process.env.LLMBOX_CHROMIUM;
  if (env) return existsSync(env) ? env : null;
  return CANDIDATES.find((p) => existsSync(p)) ?? null;
}

/** The subset of playwright-core's Browser this module uses. */
export interface HeadlessBrowser {
  newPage(opts?: { viewport?: { width: number; height: number } }): Promise<HeadlessPage>;
  close(): Promise<void>;
}
export interface HeadlessPage {
  goto(
    url: string,
    opts?: { waitUntil?: 'load' | 'domcontentloaded' | 'networkidle'; timeout?: number },
  ): Promise<unknown>;
  setContent(html: string, opts?: { waitUntil?: 'load' | 'domcontentloaded'; timeout?: number }): Promise<void>;
  waitForFunction(fn: string, arg?: unknown, opts?: { timeout?: number }): Promise<unknown>;
  evaluate<T>(fn: string): Promise<T>;
  screenshot(opts: { path?: string; fullPage?: boolean }): Promise<Buffer>;
}

/** Starts headless Chromium through playwright-core, or fails saying what to install. */
export async function launchChromium(): Promise<HeadlessBrowser> {
  const executablePath = findChromium();
  if (!executablePath) {
    throw new LlmboxError('no Chromium or Chrome found to render the figure', {
      fix: 'install one (Debian/Ubuntu: apt-get install chromium) or set LLMBOX_CHROMIUM to its executable; .html and .json need no browser',
    });
  }
  const { chromium } = await import('playwright-core').catch(() => {
    throw new LlmboxError('playwright-core is not installed (it drives Chromium to draw SVG and PNG)', {
      fix: 'npm install playwright-core (optional); .html and .json need no browser',
    });
  });
  return (await chromium.launch({ executablePath, args: CHROMIUM_FLAGS })) as unknown as HeadlessBrowser;
}
