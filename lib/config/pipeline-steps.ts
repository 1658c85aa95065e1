/**
 * The steps of the experiment pipeline, in order: the names of its ledger markers and of its
 * states (`Check-<step>`, `Run-<step>`, `Done-<step>`), shared by the state machine
 * (lib/constructs/experiment-pipeline.ts) and `dapt pipeline status`, with no CDK dependency.
 */
export const PIPELINE_STEPS = [
  'data',
  'tokenize',
  'train',
  'candidate',
  'evaluate',
  'gate',
  'register',
  'approve',
  'deploy',
  'cleanup',
] as const;
export type PipelineStep = (typeof PIPELINE_STEPS)[number];
