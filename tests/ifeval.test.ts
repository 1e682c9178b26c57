import { describe, expect, it } from 'vitest';
import { CHECKERS, followed, looseVariants } from '../lib/eval/metrics/ifeval/index.js';
import { countWords, splitIntoSentences, wordTokenize } from '../lib/eval/metrics/ifeval/text.js';
import { evaluate } from '../lib/eval/evaluate.js';
import { TASKS } from '../lib/eval/tasks/index.js';
import { ifeval } from '../lib/eval/tasks/ifeval.js';
import { ScriptedLM } from './helpers/scripted.js';

const check = (id: string, response: string, kwargs: Record<string, string | number | string[]> = {}) =>
  CHECKERS[id](response, kwargs);

describe("IFEval's text measures", () => {
  it('counts words as \\w+ runs, Unicode letters included', () => {
    // Don, t, stop, me, now, 42, times
    expect(countWords("Don't stop-me now, 42 times!")).toBe(7);
    expect(countWords('naïve café')).toBe(2);
    expect(countWords('')).toBe(0);
  });

  it('splits sentences without breaking at abbreviations, initials, decimals, sites or ellipses', () => {
    expect(splitIntoSentences('Mr. Smith paid 3.50 dollars. He left!')).toEqual([
      'Mr. Smith paid 3.50 dollars.',
      'He left!',
    ]);
    expect(splitIntoSentences('Visit example.com today. Then wait... And go?')).toEqual([
      'Visit example.com today.',
      'Then wait...',
      'And go?',
    ]);
    expect(splitIntoSentences('J. R. R. Tolkien wrote it. It sold.')).toHaveLength(2);
    expect(splitIntoSentences('One sentence without an end')).toEqual(['One sentence without an end']);
  });

  it('tokenises like the Treebank tokenizer at word edges and clitics', () => {
    expect(wordTokenize('DON\'T SHOUT, "PLEASE"!')).toEqual(['DO', "N'T", 'SHOUT', ',', '"', 'PLEASE', '"', '!']);
    expect(wordTokenize("WELL-KNOWN I'M")).toEqual(['WELL-KNOWN', 'I', "'M"]);
  });
});

describe('the 25 instructions, on crafted responses (the original definitions)', () => {
  it('keywords', () => {
    expect(check('keywords:existence', 'The Sun and the MOON', { keywords: ['sun', 'moon'] })).toBe(true);
    expect(check('keywords:existence', 'The Sun only', { keywords: ['sun', 'moon'] })).toBe(false);
    // frequency counts substrings, case-insensitively; "less than" is strict, "at least" is not
    const kw = { keyword: 'cat', frequency: 2 };
    expect(check('keywords:frequency', 'cat Cat concatenate', { ...kw, relation: 'at least' })).toBe(true);
    expect(check('keywords:frequency', 'cat Cat', { ...kw, relation: 'less than' })).toBe(false);
    expect(check('keywords:frequency', 'cat', { ...kw, relation: 'less than' })).toBe(true);
    // forbidden words match whole words only
    expect(check('keywords:forbidden_words', 'concatenate', { forbidden_words: ['cat'] })).toBe(true);
    expect(check('keywords:forbidden_words', 'a Cat.', { forbidden_words: ['cat'] })).toBe(false);
    const lf = { letter: 'a', let_frequency: 3 };
    expect(check('keywords:letter_frequency', 'Banana', { ...lf, let_relation: 'at least' })).toBe(true);
    expect(check('keywords:letter_frequency', 'Banana', { ...lf, let_relation: 'less than' })).toBe(false);
  });

  it('language and case', () => {
    const de = 'Das ist eine Antwort auf Deutsch, die ganz klar in dieser Sprache geschrieben wurde.';
    expect(check('language:response_language', de, { language: 'de' })).toBe(true);
    expect(check('language:response_language', de, { language: 'en' })).toBe(false);
    // an undetectable text counts as followed, as when langdetect raises
    expect(check('language:response_language', '42', { language: 'de' })).toBe(true);
    expect(check('change_case:english_capital', 'THIS IS ALL IN CAPITAL LETTERS, AS ASKED.')).toBe(true);
    expect(check('change_case:english_capital', 'THIS IS ALMOST all in capitals.')).toBe(false);
    expect(check('change_case:english_lowercase', 'this is all in lowercase letters, as asked.')).toBe(true);
    expect(check('change_case:english_lowercase', 'this is not, says Bob.')).toBe(false);
    const cap = { capital_frequency: 2 };
    expect(
      check('change_case:capital_word_frequency', 'I SAID NO to it', { ...cap, capital_relation: 'at least' }),
    ).toBe(true);
    expect(check('change_case:capital_word_frequency', 'I said no', { ...cap, capital_relation: 'less than' })).toBe(
      true,
    );
    expect(check('change_case:capital_word_frequency', 'NASA AND ESA', { ...cap, capital_relation: 'less than' })).toBe(
      false,
    );
  });

  it('length constraints', () => {
    const s = 'One here. Two here. Three here.';
    expect(check('length_constraints:number_sentences', s, { num_sentences: 3, relation: 'at least' })).toBe(true);
    expect(check('length_constraints:number_sentences', s, { num_sentences: 3, relation: 'less than' })).toBe(false);
    expect(check('length_constraints:number_words', 'a b c', { num_words: 3, relation: 'at least' })).toBe(true);
    expect(check('length_constraints:number_words', 'a b c', { num_words: 3, relation: 'less than' })).toBe(false);
    // paragraphs split by ***; empty ones only at the ends are dropped
    expect(check('length_constraints:number_paragraphs', 'A\n***\nB\n***\n', { num_paragraphs: 2 })).toBe(true);
    expect(check('length_constraints:number_paragraphs', 'A\n***\n***\nB', { num_paragraphs: 2 })).toBe(false);
    const nth = { num_paragraphs: 2, nth_paragraph: 2, first_word: 'Then' };
    expect(check('length_constraints:nth_paragraph_first_word', 'First.\n\n"Then, more.', nth)).toBe(true);
    expect(check('length_constraints:nth_paragraph_first_word', 'First.\n\nThere.', nth)).toBe(false);
    expect(check('length_constraints:nth_paragraph_first_word', 'First.\n\nThen.\n\nThird.', nth)).toBe(false);
  });

  it('detectable content and format', () => {
    expect(check('detectable_content:number_placeholders', 'Dear [name] at [address]', { num_placeholders: 2 })).toBe(
      true,
    );
    expect(check('detectable_content:number_placeholders', 'Dear [name]', { num_placeholders: 2 })).toBe(false);
    expect(check('detectable_content:postscript', 'Bye.\nP.S. see you', { postscript_marker: 'P.S.' })).toBe(true);
    expect(check('detectable_content:postscript', 'Bye.\np. p. s more', { postscript_marker: 'P.P.S' })).toBe(true);
    expect(check('detectable_content:postscript', 'Bye.', { postscript_marker: 'P.S.' })).toBe(false);
    expect(check('detectable_format:number_bullet_lists', '* one\n* two\n- three', { num_bullets: 3 })).toBe(true);
    expect(check('detectable_format:number_bullet_lists', '* one\n** bold', { num_bullets: 2 })).toBe(false);
    expect(check('detectable_format:constrained_response', 'Well. My answer is maybe.')).toBe(true);
    expect(check('detectable_format:constrained_response', 'My answer is perhaps.')).toBe(false);
    // *a* counts, and **b** counts as a double highlight (the empty "**" pairs the single pattern sees do not)
    expect(check('detectable_format:number_highlighted_sections', '*a* and **b**', { num_highlights: 2 })).toBe(true);
    expect(check('detectable_format:number_highlighted_sections', '*a* and ** **', { num_highlights: 2 })).toBe(false);
    const sections = { section_spliter: 'Section', num_sections: 2 };
    expect(check('detectable_format:multiple_sections', 'Section 1\nx\nSection 2\ny', sections)).toBe(true);
    expect(check('detectable_format:multiple_sections', 'Section 1\nx', sections)).toBe(false);
    expect(check('detectable_format:json_format', '```json\n{"a": 1}\n```')).toBe(true);
    expect(check('detectable_format:json_format', 'Here: {"a": 1}')).toBe(false);
    expect(check('detectable_format:title', '<<A Poem>>\nroses')).toBe(true);
    expect(check('detectable_format:title', '<< >>\nroses')).toBe(false);
  });

  it('combinations, start and end, punctuation', () => {
    expect(check('combination:two_responses', 'First one.\n******\nSecond one.')).toBe(true);
    expect(check('combination:two_responses', 'Same.\n******\nSame.')).toBe(false);
    expect(check('combination:two_responses', 'A\n******\n\n******\nB')).toBe(false);
    expect(check('combination:repeat_prompt', 'WRITE a poem. Here it is', { prompt_to_repeat: 'Write a poem.' })).toBe(
      true,
    );
    expect(check('combination:repeat_prompt', 'Sure! Write a poem.', { prompt_to_repeat: 'Write a poem.' })).toBe(
      false,
    );
    expect(check('startend:end_checker', '"... Any other questions?"', { end_phrase: 'Any other questions?' })).toBe(
      true,
    );
    expect(check('startend:end_checker', 'Any other questions? Bye', { end_phrase: 'Any other questions?' })).toBe(
      false,
    );
    expect(check('punctuation:no_comma', 'No commas here.')).toBe(true);
    expect(check('punctuation:no_comma', 'Yes, one.')).toBe(false);
    expect(check('startend:quotation', ' "quoted" ')).toBe(true);
    expect(check('startend:quotation', '"')).toBe(false);
    expect(Object.keys(CHECKERS)).toHaveLength(25);
  });

  it('loose accuracy also tries the response without asterisks and without its first or last line', () => {
    expect(looseVariants('Sure:\n*"hi"*\nDone')).toContain('"hi"');
    const ins = [{ id: 'startend:quotation', kwargs: {} }];
    const r = followed('Sure, here it is:\n"A quoted answer"', ins);
    expect(r).toEqual({ strict: [false], loose: [true] });
    // an empty response follows nothing, strictly or loosely
    expect(followed('   ', [{ id: 'punctuation:no_comma', kwargs: {} }])).toEqual({ strict: [false], loose: [false] });
  });
});

describe('the ifeval task', () => {
  it('reports prompt-level and instruction-level accuracy, strict and loose, over all instructions', async () => {
    // Two prompts: one with two instructions, one with one; the scripted answers follow 2 of the 3 strictly.
    const docs = [
      {
        id: 'a',
        query: 'Answer without commas, in quotes.',
        references: [''],
        extra: {
          instructions: [
            { id: 'punctuation:no_comma', kwargs: {} },
            { id: 'startend:quotation', kwargs: {} },
          ],
        },
      },
      {
        id: 'b',
        query: 'Say yes, no or maybe.',
        references: [''],
        extra: { instructions: [{ id: 'detectable_format:constrained_response', kwargs: {} }] },
      },
    ];
    TASKS.ifeval_crafted = { ...ifeval, name: 'ifeval_crafted', loadSplit: () => docs };
    const answers: Record<string, string> = {
      'Answer without commas, in quotes.': 'Here:\n"no commas at all"',
      'Say yes, no or maybe.': 'My answer is yes.',
    };
    const run = await evaluate(new ScriptedLM((r) => answers[r.context]), ['ifeval_crafted'], {});
    const m = run.results[0].metrics;
    // strict: a follows no_comma but not quotation (preamble line); b follows
    expect(m.prompt_level_strict_acc.value).toBe(0.5);
    expect(m.inst_level_strict_acc.value).toBeCloseTo(2 / 3, 12);
    // loose: dropping the first line makes a's quotation count
    expect(m.prompt_level_loose_acc.value).toBe(1);
    expect(m.inst_level_loose_acc.value).toBe(1);
  });
});
