import { detectLanguage } from './language.js';
import { countSentences, countWords, isLower, isUpper, wordTokenize } from './text.js';

/** An instruction's arguments as the data gives them (IFEval's kwargs, nulls dropped). */
export type Kwargs = Record<string, string | number | string[]>;
type Checker = (response: string, kw: Kwargs) => boolean;

const str = (kw: Kwargs, k: string) => String(kw[k] ?? '');
const num = (kw: Kwargs, k: string) => Number(kw[k]);
const list = (kw: Kwargs, k: string) => (Array.isArray(kw[k]) ? (kw[k] as string[]) : []);
/** IFEval's two relations: "less than" is strict, "at least" is not. */
const compare = (actual: number, relation: string, threshold: number) =>
  relation === 'less than' ? actual < threshold : actual >= threshold;

/** A keyword searched as the original does: as a regular expression, case-insensitively (escaped only where it is not a valid one). */
function pattern(source: string, flags: string): RegExp {
  try {
    return new RegExp(source, flags);
  } catch {
    return new RegExp(source.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), flags);
  }
}
const languageIs = (text: string, code: string) => {
  const found = detectLanguage(text);
  return found === undefined || found === code;
};
const stripChars = (s: string, chars: string) => {
  let a = 0,
    b = s.length;
  while (a < b && chars.includes(s[a])) a++;
  while (b > a && chars.includes(s[b - 1])) b--;
  return s.slice(a, b);
};

/**
 * The 25 instructions of IFEval (Zhou et al. 2023), each as the original's check_following defines
 * it (google-research instruction_following_eval/instructions.py), by instruction id.
 */
export const CHECKERS: Record<string, Checker> = {
  'keywords:existence': (r, kw) => list(kw, 'keywords').every((k) => pattern(k, 'iu').test(r)),
  'keywords:frequency': (r, kw) =>
    compare(r.match(pattern(str(kw, 'keyword').trim(), 'giu'))?.length ?? 0, str(kw, 'relation'), num(kw, 'frequency')),
  'keywords:forbidden_words': (r, kw) => !list(kw, 'forbidden_words').some((w) => pattern(`\\b${w}\\b`, 'iu').test(r)),
  'keywords:letter_frequency': (r, kw) => {
    const letter = str(kw, 'letter').trim().toLowerCase();
    const count = [...r.toLowerCase()].filter((c) => c === letter).length;
    return compare(count, str(kw, 'let_relation'), num(kw, 'let_frequency'));
  },
  'language:response_language': (r, kw) => languageIs(r, str(kw, 'language')),
  'length_constraints:number_sentences': (r, kw) =>
    compare(countSentences(r), str(kw, 'relation'), num(kw, 'num_sentences')),
  'length_constraints:number_paragraphs': (r, kw) => {
    const paragraphs = r.split(/\s?\*\*\*\s?/);
    let n = paragraphs.length;
    for (const [i, p] of paragraphs.entries()) {
      if (p.trim()) continue;
      if (i === 0 || i === paragraphs.length - 1) n--;
      else return false;
    }
    return n === num(kw, 'num_paragraphs');
  },
  'length_constraints:number_words': (r, kw) => compare(countWords(r), str(kw, 'relation'), num(kw, 'num_words')),
  'length_constraints:nth_paragraph_first_word': (r, kw) => {
    const paragraphs = r.split('\n\n');
    const n = paragraphs.filter((p) => p.trim()).length;
    const nth = num(kw, 'nth_paragraph');
    if (nth > n) return false;
    const paragraph = paragraphs[nth - 1].trim();
    if (!paragraph) return false;
    const word = paragraph.split(/\s+/)[0].replace(/^'+/, '').replace(/^"+/, '');
    let first = '';
    for (const ch of word) {
      if ('.,?!\'"'.includes(ch)) break;
      first += ch.toLowerCase();
    }
    return n === num(kw, 'num_paragraphs') && first === str(kw, 'first_word').toLowerCase();
  },
  'detectable_content:number_placeholders': (r, kw) =>
    (r.match(/\[.*?\]/g)?.length ?? 0) >= num(kw, 'num_placeholders'),
  'detectable_content:postscript': (r, kw) => {
    const marker = str(kw, 'postscript_marker').trim();
    const source =
      marker === 'P.P.S'
        ? '\\s*p\\.\\s?p\\.\\s?s.*$'
        : marker === 'P.S.'
          ? '\\s*p\\.\\s?s\\..*$'
          : `\\s*${marker.toLowerCase()}.*$`;
    return pattern(source, 'mu').test(r.toLowerCase());
  },
  'detectable_format:number_bullet_lists': (r, kw) =>
    (r.match(/^\s*\*[^*].*$/gm)?.length ?? 0) + (r.match(/^\s*-.*$/gm)?.length ?? 0) === num(kw, 'num_bullets'),
  'detectable_format:constrained_response': (r) =>
    ['My answer is yes.', 'My answer is no.', 'My answer is maybe.'].some((o) => r.trim().includes(o)),
  'detectable_format:number_highlighted_sections': (r, kw) => {
    const single = (r.match(/\*[^\n*]*\*/g) ?? []).filter((h) => stripChars(h, '*').trim());
    const double = (r.match(/\*\*[^\n*]*\*\*/g) ?? []).filter((h) => h.slice(2, -2).trim());
    return single.length + double.length >= num(kw, 'num_highlights');
  },
  'detectable_format:multiple_sections': (r, kw) =>
    r.split(pattern(`\\s?${str(kw, 'section_spliter').trim()}\\s?\\d+\\s?`, 'u')).length - 1 >= num(kw, 'num_sections'),
  'detectable_format:json_format': (r) => {
    let v = r.trim();
    for (const p of ['```json', '```Json', '```JSON', '```']) if (v.startsWith(p)) v = v.slice(p.length);
    if (v.endsWith('```')) v = v.slice(0, -3);
    try {
      JSON.parse(v.trim());
      return true;
    } catch {
      return false;
    }
  },
  'detectable_format:title': (r) =>
    (r.match(/<<[^\n]+>>/g) ?? []).some((t) => t.replace(/^<+/, '').replace(/>+$/, '').trim()),
  'combination:two_responses': (r) => {
    const parts = r.split('******');
    const valid: string[] = [];
    for (const [i, p] of parts.entries()) {
      if (p.trim()) valid.push(p);
      else if (i !== 0 && i !== parts.length - 1) return false;
    }
    return valid.length === 2 && valid[0].trim() !== valid[1].trim();
  },
  'combination:repeat_prompt': (r, kw) =>
    r.trim().toLowerCase().startsWith(str(kw, 'prompt_to_repeat').trim().toLowerCase()),
  'startend:end_checker': (r, kw) =>
    stripChars(r.trim(), '"').toLowerCase().endsWith(str(kw, 'end_phrase').trim().toLowerCase()),
  'change_case:capital_word_frequency': (r, kw) =>
    compare(wordTokenize(r).filter(isUpper).length, str(kw, 'capital_relation'), num(kw, 'capital_frequency')),
  'change_case:english_capital': (r) => isUpper(r) && languageIs(r, 'en'),
  'change_case:english_lowercase': (r) => isLower(r) && languageIs(r, 'en'),
  'punctuation:no_comma': (r) => !r.includes(','),
  'startend:quotation': (r) => {
    const v = r.trim();
    return v.length > 1 && v[0] === '"' && v[v.length - 1] === '"';
  },
};
