/**
 * The text measures IFEval's checkers use (google-research instruction_following_eval,
 * instructions_util.py), in TypeScript. Where the original calls NLTK, the closest rule without it
 * is used and named here.
 */

/** Words as nltk's RegexpTokenizer(r"\w+") finds them: runs of Unicode letters, digits and underscores. */
export function countWords(text: string): number {
  return text.match(/[\p{L}\p{N}_]+/gu)?.length ?? 0;
}

const ALPHABETS = '([A-Za-z])';
const PREFIXES = /(Mr|St|Mrs|Ms|Dr)[.]/g;
const SUFFIXES = '(Inc|Ltd|Jr|Sr|Co)';
const STARTERS =
  '(Mr|Mrs|Ms|Dr|Prof|Capt|Cpt|Lt|He\\s|She\\s|It\\s|They\\s|Their\\s|Our\\s|We\\s|But\\s|However\\s|That\\s|This\\s|Wherever)';
const ACRONYMS = '([A-Z][.][A-Z][.](?:[A-Z][.])?)';
const WEBSITES = /[.](com|net|org|io|gov|edu|me)/g;
const re = (s: string) => new RegExp(s, 'g');

/**
 * IFEval's own sentence splitter (split_into_sentences): abbreviations, initials, decimals, web
 * addresses and ellipses do not end a sentence. The original counts sentences with NLTK's punkt
 * model instead; on ordinary prose the two agree, on unusual abbreviations they may not.
 */
export function splitIntoSentences(input: string): string[] {
  let text = ` ${input}  `.replace(/\n/g, ' ');
  text = text.replace(PREFIXES, '$1<prd>');
  text = text.replace(WEBSITES, '<prd>$1');
  text = text.replace(/([0-9])[.]([0-9])/g, '$1<prd>$2');
  text = text.replace(/\.{2,}/g, (m) => '<prd>'.repeat(m.length) + '<stop>');
  if (text.includes('Ph.D')) text = text.replaceAll('Ph.D.', 'Ph<prd>D<prd>');
  text = text.replace(re(`\\s${ALPHABETS}[.] `), ' $1<prd> ');
  text = text.replace(re(`${ACRONYMS} ${STARTERS}`), '$1<stop> $2');
  text = text.replace(re(`${ALPHABETS}[.]${ALPHABETS}[.]${ALPHABETS}[.]`), '$1<prd>$2<prd>$3<prd>');
  text = text.replace(re(`${ALPHABETS}[.]${ALPHABETS}[.]`), '$1<prd>$2<prd>');
  text = text.replace(re(` ${SUFFIXES}[.] ${STARTERS}`), ' $1<stop> $2');
  text = text.replace(re(` ${SUFFIXES}[.]`), ' $1<prd>');
  text = text.replace(re(` ${ALPHABETS}[.]`), ' $1<prd>');
  text = text.replaceAll('.”', '”.').replaceAll('."', '".').replaceAll('!"', '"!').replaceAll('?"', '"?');
  text = text.replaceAll('.', '.<stop>').replaceAll('?', '?<stop>').replaceAll('!', '!<stop>');
  text = text.replaceAll('<prd>', '.');
  const sentences = text.split('<stop>').map((s) => s.trim());
  if (sentences.length && !sentences[sentences.length - 1]) sentences.pop();
  return sentences;
}

export const countSentences = (text: string) => splitIntoSentences(text).length;

/**
 * Tokens in the manner of nltk.word_tokenize (Treebank): punctuation at a word's edges and the
 * clitics n't, 's, 'm, 'd, 're, 've, 'll are tokens of their own; hyphenated words stay whole.
 */
export function wordTokenize(text: string): string[] {
  const out: string[] = [];
  for (const piece of text.split(/\s+/).filter(Boolean)) {
    const m = /^([^\p{L}\p{N}_]*)(.*?)([^\p{L}\p{N}_]*)$/su.exec(piece)!;
    out.push(...[...m[1]]);
    if (m[2]) {
      const clitic = /^(.*?)(n't|'s|'m|'d|'re|'ve|'ll)$/iu.exec(m[2]);
      if (clitic && clitic[1]) out.push(clitic[1], clitic[2]);
      else out.push(m[2]);
    }
    out.push(...[...m[3]]);
  }
  return out;
}

const CASED = /[\p{Lu}\p{Ll}\p{Lt}]/u;
/** Python's str.isupper(): some cased character, and no lowercase or titlecase one. */
export const isUpper = (s: string) => CASED.test(s) && !/[\p{Ll}\p{Lt}]/u.test(s);
/** Python's str.islower(): some cased character, and no uppercase or titlecase one. */
export const isLower = (s: string) => CASED.test(s) && !/[\p{Lu}\p{Lt}]/u.test(s);
