/**
 * Scoring constants shared with `dapt_eval`: `containers/eval/src/dapt_eval/scoring_constants.json`,
 * read by both runtimes (esbuild inlines it into the Lambda bundles).
 */
import constants from '../../containers/eval/src/dapt_eval/scoring_constants.json';

/** A reply that is exactly an answer letter (`B`, `(b)`, `Answer: C.`), matched against the whole stripped reply. */
export const MCQ_LETTER = new RegExp(`^(?:${constants.mcq_letter_pattern})$`, 'iu');
/** The simulated provider's wrong QA answer. */
export const QA_WRONG_ANSWER = constants.qa_wrong_answer;
/** The simulated provider's wrong summary: the document's first characters. */
export const SUMMARY_FALLBACK_CHARS = constants.summary_fallback_chars;
/** The judge sees at most this many code points of a candidate answer (the cut is recorded). */
export const JUDGE_CANDIDATE_MAX_CHARS = constants.judge_candidate_max_chars;
