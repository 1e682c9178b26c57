import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { extname } from 'node:path';
import { LlmboxError } from '../errors.js';
import { writeFileAtomic } from '../util/fs.js';
import { launchChromium } from './browser.js';

/** A Plotly trace or layout: plain JSON, as plotly.js takes it. */
export type PlotlyObject = Record<string, unknown>;

let plotlySource: string | undefined;
/** plotly.js itself, from the installed plotly.js-dist-min (no CDN: many users, and CI, are offline). */
export function plotlyScript(): string {
  plotlySource ??= readFileSync(createRequire(import.meta.url).resolve('plotly.js-dist-min/plotly.min.js'), 'utf8');
  return plotlySource;
}

let nextId = 0;

/**
 * A Plotly figure. `toHTML()` gives a fragment that draws it where plotly.js is already loaded (in a
 * notebook, once per page); `toStandaloneHTML()` a whole page with plotly.js inlined.
 */
export class Figure {
  readonly data: PlotlyObject[];
  readonly layout: PlotlyObject;

  constructor(data: PlotlyObject[], layout: PlotlyObject = {}) {
    this.data = data;
    this.layout = layout;
  }

  toJSON(): { data: PlotlyObject[]; layout: PlotlyObject } {
    return { data: this.data, layout: this.layout };
  }

  /**
   * A div and the script that draws into it. In a notebook plotly.js arrives with the first figure
   * of the session; a figure whose output comes before that one on the page waits for it.
   */
  toHTML(): string {
    const id = `llmbox-plot-${process.pid}-${nextId++}`;
    // "</" is escaped so that text inside the figure cannot close the script element.
    const spec = JSON.stringify(this.toJSON()).replace(/<\//g, '<\\/');
    return `<div id="${id}" class="llmbox-plot" style="width:100%;min-height:360px"></div>\n<script>(function(){var f=${spec},n=0;(function draw(){if(!window.Plotly){if(n++<400)setTimeout(draw,50);return;}Plotly.newPlot(${JSON.stringify(id)},f.data,f.layout,{responsive:true,displaylogo:false});})();})();</script>`;
  }

  toStandaloneHTML(title = 'llmbox figure'): string {
    const esc = title.replace(/[<&>]/g, (c) => ({ '<': '&lt;', '&': '&amp;', '>': '&gt;' })[c]!);
    return `<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>${esc}</title>\n<script>${plotlyScript()}</script></head>\n<body>\n${this.toHTML()}\n</body></html>\n`;
  }

  /**
   * Writes the figure (atomically). `.html`: a standalone page with plotly.js inlined; `.json`: the
   * Plotly spec; `.svg` / `.png`: drawn by plotly.js in headless Chromium (for papers).
   */
  async save(path: string, opts: { width?: number; height?: number; scale?: number } = {}): Promise<string> {
    const ext = extname(path).toLowerCase();
    const title = String((this.layout.title as PlotlyObject | undefined)?.text ?? 'llmbox figure');
    if (ext === '.html') writeFileAtomic(path, this.toStandaloneHTML(title));
    else if (ext === '.json') writeFileAtomic(path, JSON.stringify(this.toJSON(), null, 2));
    else if (ext === '.svg' || ext === '.png')
      writeFileAtomic(path, await this.render(ext.slice(1) as 'svg' | 'png', opts));
    else
      throw new LlmboxError(`cannot save a figure as ${ext || '(no extension)'}`, {
        file: path,
        fix: 'use .html, .json, .svg or .png',
      });
    return path;
  }

  /** The figure as SVG text or PNG bytes, via Plotly.toImage in headless Chromium. */
  async render(
    format: 'svg' | 'png',
    opts: { width?: number; height?: number; scale?: number } = {},
  ): Promise<string | Uint8Array> {
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      await page.setContent(this.toStandaloneHTML(), { waitUntil: 'load' });
      await page.waitForFunction(`!!document.querySelector('.llmbox-plot .main-svg')`, undefined, { timeout: 30_000 });
      const o = JSON.stringify({
        format,
        width: opts.width ?? 800,
        height: opts.height ?? 450,
        scale: opts.scale ?? (format === 'png' ? 2 : 1),
      });
      const url = await page.evaluate<string>(`Plotly.toImage(document.querySelector('.llmbox-plot'), ${o})`);
      const comma = url.indexOf(',');
      const head = url.slice(0, comma);
      const body = url.slice(comma + 1);
      if (format === 'png') return new Uint8Array(Buffer.from(body, 'base64'));
      return head.endsWith(';base64') ? Buffer.from(body, 'base64').toString('utf8') : decodeURIComponent(body);
    } finally {
      await browser.close();
    }
  }
}
