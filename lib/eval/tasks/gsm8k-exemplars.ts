/**
 * Exemplars for GSM8K's other chain-of-thought modes, written for llmbox (not copied from the PAL
 * or least-to-most papers) on the first eight training problems, the ones the base CoT prompt
 * shows. The problems' text is read from the data; each exemplar names its row and the answer it
 * reaches, which loading checks against the row's "#### N" (tests also run every PAL program).
 */

export interface PalExemplar {
  row: number;
  answer: string;
  /** The body of `def solution():`, indented. */
  body: string;
}

export const PAL_EXEMPLARS: PalExemplar[] = [
  { row: 0, answer: '72', body: '    april = 48\n    may = april / 2\n    return april + may' },
  { row: 1, answer: '10', body: '    per_hour = 12\n    minutes = 50\n    return per_hour / 60 * minutes' },
  {
    row: 2,
    answer: '5',
    body: '    cost = 100\n    saved = cost / 2\n    parents = 15\n    grandparents = 2 * parents\n    return cost - saved - parents - grandparents',
  },
  {
    row: 3,
    answer: '42',
    body: '    pages = 120\n    yesterday = 12\n    today = 2 * yesterday\n    remaining = pages - yesterday - today\n    return remaining / 2',
  },
  {
    row: 4,
    answer: '624',
    body: '    pages_per_letter = 3\n    friends = 2\n    times_per_week = 2\n    weeks = 52\n    return pages_per_letter * friends * times_per_week * weeks',
  },
  {
    row: 5,
    answer: '35',
    body: '    yellow = 10\n    purple = yellow * 1.8\n    green = 0.25 * (yellow + purple)\n    return yellow + purple + green',
  },
  { row: 6, answer: '48', body: '    large = 2 * 16\n    small = 2 * 8\n    return large + small' },
  {
    row: 7,
    answer: '16',
    body: '    weight = 2\n    weight = weight * 3\n    weight = weight + 2\n    weight = weight * 2\n    return weight',
  },
];

export interface LeastToMostExemplar {
  row: number;
  answer: string;
  /** Sub-questions and their answers, in order; the problem's own question comes after them. */
  steps: [string, string][];
  /** The answer to the problem's own question, ending "The answer is N." */
  final: string;
}

export const LEAST_TO_MOST_EXEMPLARS: LeastToMostExemplar[] = [
  {
    row: 0,
    answer: '72',
    steps: [['How many clips did Natalia sell in May?', 'Half as many as the 48 of April: 48 / 2 = 24.']],
    final: 'She sold 48 in April and 24 in May: 48 + 24 = 72. The answer is 72.',
  },
  {
    row: 2,
    answer: '5',
    steps: [
      ['How much money does Betty have?', 'Half of the $100: 100 / 2 = 50 dollars.'],
      ['How much do her grandparents give her?', "Twice her parents' $15: 15 * 2 = 30 dollars."],
    ],
    final: 'She will have 50 + 15 + 30 = 95 dollars, so she needs 100 - 95 = 5 more. The answer is 5.',
  },
  {
    row: 3,
    answer: '42',
    steps: [
      ['How many pages did Julie read today?', 'Twice the 12 of yesterday: 12 * 2 = 24.'],
      ['How many pages are left?', 'She has read 12 + 24 = 36 of 120, so 120 - 36 = 84 are left.'],
    ],
    final: 'Half of the 84 remaining pages: 84 / 2 = 42. The answer is 42.',
  },
  {
    row: 7,
    answer: '16',
    steps: [
      ['What did the box weigh after the brownies?', 'The 2 pounds tripled: 2 * 3 = 6 pounds.'],
      ['What did it weigh after the second jelly beans?', '6 + 2 = 8 pounds.'],
    ],
    final: 'The gummy worms doubled it: 8 * 2 = 16 pounds. The answer is 16.',
  },
];
