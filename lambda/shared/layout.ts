/**
 * Where each kind of object lives in the eval bucket: `containers/eval/src/dapt_eval/eval_bucket_layout.json`,
 * the one definition both runtimes read (esbuild inlines the JSON into the Lambda bundles).
 */
import layout from '../../containers/eval/src/dapt_eval/eval_bucket_layout.json';

/** The eval bucket's prefixes, by kind of object. */
export const EVAL_PREFIXES = {
  benchmarks: layout.benchmarks,
  runs: layout.runs,
  results: layout.results,
  athena: layout.athena,
} as const;
