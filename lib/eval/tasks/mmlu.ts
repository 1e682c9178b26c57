import { join } from 'node:path';
import { LlmboxError } from '../../errors.js';
import { choiceTask } from './define.js';
import { field, isIntString, isString, readDelimited } from '../../data/files.js';
import type { Doc, Task, TaskGroup } from './types.js';

export const MMLU_SUBJECTS = [
  'abstract_algebra',
  'anatomy',
  'astronomy',
  'business_ethics',
  'clinical_knowledge',
  'college_biology',
  'college_chemistry',
  'college_computer_science',
  'college_mathematics',
  'college_medicine',
  'college_physics',
  'computer_security',
  'conceptual_physics',
  'econometrics',
  'electrical_engineering',
  'elementary_mathematics',
  'formal_logic',
  'global_facts',
  'high_school_biology',
  'high_school_chemistry',
  'high_school_computer_science',
  'high_school_european_history',
  'high_school_geography',
  'high_school_government_and_politics',
  'high_school_macroeconomics',
  'high_school_mathematics',
  'high_school_microeconomics',
  'high_school_physics',
  'high_school_psychology',
  'high_school_statistics',
  'high_school_us_history',
  'high_school_world_history',
  'human_aging',
  'human_sexuality',
  'international_law',
  'jurisprudence',
  'logical_fallacies',
  'machine_learning',
  'management',
  'marketing',
  'medical_genetics',
  'miscellaneous',
  'moral_disputes',
  'moral_scenarios',
  'nutrition',
  'philosophy',
  'prehistory',
  'professional_accounting',
  'professional_law',
  'professional_medicine',
  'professional_psychology',
  'public_relations',
  'security_studies',
  'sociology',
  'us_foreign_policy',
  'virology',
  'world_religions',
];

/**
 * MMLU (Hendrycks et al. 2021), one task per subject, in lm-evaluation-harness's default format:
 * the subject header, 5 solved dev questions in order, then the question with its options lettered
 * and "Answer:"; scored by the likelihood of each letter (option probability). `ppl` scores the
 * option texts after "Answer:" instead.
 */
function mmluSubject(subject: string): Task {
  return choiceTask({
    name: `mmlu_${subject}`,
    dataFolder: 'mmlu',
    methods: ['prob', 'ppl'],
    defaultMethod: 'prob',
    defaultShots: 5,
    fewshotOrder: 'first',
    fewshotDelimiter: '\n\n',
    description: () =>
      `The following are multiple choice questions (with answers) about ${subject.replace(/_/g, ' ')}.\n\n`,
    loadSplit(dataDir, split) {
      const file = join(
        dataDir,
        split === 'eval' ? 'test' : 'dev',
        `${subject}_${split === 'eval' ? 'test' : 'dev'}.csv`,
      );
      return readDelimited(file).map((row, i): Doc => {
        const question = field(row, 'question', isString, 'a string', file, i).trim();
        const choices = [0, 1, 2, 3].map((j) => field(row, `choice${j}`, isString, 'a string', file, i));
        const gold = Number(field(row, 'answer', isIntString, 'the index 0-3 of the correct choice', file, i));
        if (gold < 0 || gold > 3)
          throw new LlmboxError(`row ${i + 1}: answer ${gold} is not 0-3`, { file, field: 'answer' });
        return { id: `${subject}-${split}-${i}`, query: `${question}\nAnswer:`, question, choices, gold };
      });
    },
  });
}

export const mmluTasks: Task[] = MMLU_SUBJECTS.map(mmluSubject);
export const mmluGroup: TaskGroup = { name: 'mmlu', tasks: mmluTasks.map((t) => t.name), aggregate: 'micro' };

/** Each subject's category (Hendrycks et al.'s categories.py, as lm-eval groups them). */
const CATEGORY: Record<string, 'stem' | 'humanities' | 'social_sciences' | 'other'> = {
  abstract_algebra: 'stem',
  anatomy: 'stem',
  astronomy: 'stem',
  business_ethics: 'other',
  clinical_knowledge: 'other',
  college_biology: 'stem',
  college_chemistry: 'stem',
  college_computer_science: 'stem',
  college_mathematics: 'stem',
  college_medicine: 'other',
  college_physics: 'stem',
  computer_security: 'stem',
  conceptual_physics: 'stem',
  econometrics: 'social_sciences',
  electrical_engineering: 'stem',
  elementary_mathematics: 'stem',
  formal_logic: 'humanities',
  global_facts: 'other',
  high_school_biology: 'stem',
  high_school_chemistry: 'stem',
  high_school_computer_science: 'stem',
  high_school_european_history: 'humanities',
  high_school_geography: 'social_sciences',
  high_school_government_and_politics: 'social_sciences',
  high_school_macroeconomics: 'social_sciences',
  high_school_mathematics: 'stem',
  high_school_microeconomics: 'social_sciences',
  high_school_physics: 'stem',
  high_school_psychology: 'social_sciences',
  high_school_statistics: 'stem',
  high_school_us_history: 'humanities',
  high_school_world_history: 'humanities',
  human_aging: 'other',
  human_sexuality: 'social_sciences',
  international_law: 'humanities',
  jurisprudence: 'humanities',
  logical_fallacies: 'humanities',
  machine_learning: 'stem',
  management: 'other',
  marketing: 'other',
  medical_genetics: 'other',
  miscellaneous: 'other',
  moral_disputes: 'humanities',
  moral_scenarios: 'humanities',
  nutrition: 'other',
  philosophy: 'humanities',
  prehistory: 'humanities',
  professional_accounting: 'other',
  professional_law: 'humanities',
  professional_medicine: 'other',
  professional_psychology: 'social_sciences',
  public_relations: 'social_sciences',
  security_studies: 'social_sciences',
  sociology: 'social_sciences',
  us_foreign_policy: 'social_sciences',
  virology: 'other',
  world_religions: 'humanities',
};

/** MMLU's four categories as groups (mmlu_stem, mmlu_humanities, mmlu_social_sciences, mmlu_other), each instance counted once. */
export const mmluCategoryGroups: TaskGroup[] = (['stem', 'humanities', 'social_sciences', 'other'] as const).map(
  (c) => ({
    name: `mmlu_${c}`,
    tasks: mmluTasks.map((t) => t.name).filter((n) => CATEGORY[n.slice('mmlu_'.length)] === c),
    aggregate: 'micro',
  }),
);
