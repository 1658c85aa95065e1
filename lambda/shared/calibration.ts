/**
 * The judge calibration gate (pure): a judge scores a qa run only with a calibration report,
 * written by `dapt-eval calibrate-judge` (`dapt_eval.judge.calibrate`), that is for this judge
 * model and judge prompt and says `trusted: true` (Cohen's kappa against human verdicts at or
 * above its threshold). `allow_uncalibrated` runs anyway and the run says so.
 */
import { z } from 'zod';
import { describeModel } from './cache-key';
import { judgeRef } from './evaluate';
import { identityOf } from './plan';
import type { JudgeSpec } from './spec';

/** The report fields the gate reads; the report has more (confusion matrix, leniency, ...). */
const calibrationReportSchema = z.looseObject({
  judge: z.looseObject({ model: z.string(), prompt_version: z.string() }),
  cohen_kappa: z.number().nullable(),
  kappa_threshold: z.number(),
  trusted: z.boolean(),
  /** Reports written before adversarial calibration rows existed have none. */
  injection_resistance: z.looseObject({ rate: z.number().nullable() }).optional(),
});

/** The outcome of the gate, as recorded in run.json (`judge_calibration`). */
export interface JudgeCalibration {
  /** The report exists, is for this judge and prompt, and says `trusted: true`. */
  readonly calibrated: boolean;
  /** `judge.calibration_report` of the spec (null when unset). */
  readonly report_key: string | null;
  readonly cohen_kappa: number | null;
  readonly kappa_threshold: number | null;
  /**
   * The report's `injection_resistance.rate`: the share of adversarial calibration answers that
   * did not pass (null when the report has none, or its set had no adversarial row). Recorded,
   * not gated on: the threshold is the reader's to set.
   */
  readonly injection_resistance: number | null;
  /** Why the judge is not calibrated; empty when it is. */
  readonly problems: readonly string[];
}

/**
 * Checks `judge` against its report. `reportText` is the report object's text, or null when the
 * spec names no report or the object does not exist; `where` names the object in messages.
 */
export function checkCalibration(judge: JudgeSpec, reportText: string | null, where: string): JudgeCalibration {
  const key = judge.calibration_report ?? null;
  const result = (problems: string[], report?: z.infer<typeof calibrationReportSchema>): JudgeCalibration => ({
    calibrated: problems.length === 0,
    report_key: key,
    cohen_kappa: report?.cohen_kappa ?? null,
    kappa_threshold: report?.kappa_threshold ?? null,
    injection_resistance: report?.injection_resistance?.rate ?? null,
    problems,
  });
  if (key === null)
    return result([
      'no calibration_report is set: calibrate the judge with `dapt-eval calibrate-judge` and upload the report',
    ]);
  if (reportText === null) return result([`calibration report ${where} does not exist`]);
  let data: unknown;
  try {
    data = JSON.parse(reportText);
  } catch (err) {
    return result([`calibration report ${where} is not valid JSON: ${(err as Error).message}`]);
  }
  const parsed = calibrationReportSchema.safeParse(data);
  if (!parsed.success) {
    const fields = parsed.error.issues
      .map((i) => `${i.path.map(String).join('.') || 'report'}: ${i.message}`)
      .join('; ');
    return result([`calibration report ${where} is not a calibrate-judge report (${fields})`]);
  }
  const report = parsed.data;
  const expected = judgeRef(identityOf(judge));
  const problems: string[] = [];
  if (report.judge.model !== expected.model) {
    problems.push(
      `calibration report ${where} is for judge model '${report.judge.model}', but the spec's judge is '${describeModel(identityOf(judge))}'`,
    );
  }
  if (report.judge.prompt_version !== expected.prompt_version) {
    problems.push(
      `calibration report ${where} is for judge prompt '${report.judge.prompt_version}', but the fan-out judges with '${expected.prompt_version}'`,
    );
  }
  if (!report.trusted) {
    problems.push(
      `calibration report ${where} says trusted: false (cohen_kappa ${report.cohen_kappa ?? 'undefined'}, kappa_threshold ${report.kappa_threshold})`,
    );
  }
  return result(problems, report);
}
