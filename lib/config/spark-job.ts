/**
 * What the data pipeline's EMR Serverless job, the stacks that set it up and `dapt data submit`
 * agree on, with no CDK dependency so cli/ imports it too. The Python side (containers/data)
 * provides what the keys name; the EMR release comes from its `spark_contract.json`, as the write
 * prefix comes from its job_contract.json.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';

/** The variable that tells dapt-data its write prefix (containers/data's job_contract.json). */
export const WRITE_PREFIX_ENV = (
  JSON.parse(
    readFileSync(
      path.join(__dirname, '..', '..', 'containers', 'data', 'src', 'dapt_data', 'job_contract.json'),
      'utf8',
    ),
  ) as { environment: { writePrefix: string } }
).environment.writePrefix;

/** containers/data's spark_contract.json: the EMR release whose Spark the PySpark pin matches. */
const SPARK_CONTRACT = JSON.parse(
  readFileSync(
    path.join(__dirname, '..', '..', 'containers', 'data', 'src', 'dapt_data', 'spark_contract.json'),
    'utf8',
  ),
) as { emr_release_label: string; spark_version: string };

export const SPARK_JOB = {
  /**
   * EMR release of the application and its Spark version, read from containers/data's
   * spark_contract.json, whose test holds `pyspark.__version__` to the same version.
   */
  releaseLabel: SPARK_CONTRACT.emr_release_label,
  sparkVersion: SPARK_CONTRACT.spark_version,
  /** Key prefix of the job's code in the artifacts zone; the job role reads only this there. */
  codePrefix: 'code/dapt-data/',
  /** The PySpark entry point, under `codePrefix`. */
  entryPoint: 'code/dapt-data/spark_entry.py',
  /**
   * A packed virtual environment (venv-pack, Linux x86_64) with Python 3.11, dapt_data and
   * dapt_eval: EMR 7.x images run Python 3.9, older than the packages require. Unpacked as
   * `environment/` in each container's working directory.
   */
  environmentArchive: 'code/dapt-data/environment.tar.gz',
  /** The packages of containers/ the archive holds (what the job's code can call). */
  packages: ['eval', 'data'],
  /** Arguments of the entry point: the same as the Batch image's (`dapt-data batch`). */
  entryPointArguments: ['batch'],
  /** Spark's event logs and driver/executor logs, under the job's write prefix in the artifacts zone. */
  logsPrefix: 'spark-logs/',
  /** Prefix of the CloudWatch log streams of the job's driver and executors. */
  logStreamPrefix: 'dapt-data',
} as const;

/**
 * `--conf` settings of a job run: the packed environment as the Python of driver and executors,
 * and the environment the Batch entry point reads (PIPELINE_CONFIG, DAPT_WRITE_PREFIX, ...), set
 * for the driver and each executor alike.
 */
export function sparkSubmitParameters(artifactsBucket: string, environment: Readonly<Record<string, string>>): string {
  const python = './environment/bin/python';
  const conf: [string, string][] = [
    ['spark.archives', `s3://${artifactsBucket}/${SPARK_JOB.environmentArchive}#environment`],
    ['spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON', python],
    ['spark.emr-serverless.driverEnv.PYSPARK_PYTHON', python],
    ['spark.executorEnv.PYSPARK_PYTHON', python],
  ];
  for (const [name, value] of Object.entries(environment)) {
    if (!/^[A-Z][A-Z0-9_]*$/.test(name)) throw new Error(`Spark job environment: '${name}' is not a variable name`);
    // An empty value is left out: dapt-data reads an unset variable as '' (the whole zones).
    if (value === '') continue;
    if (/\s/.test(value)) throw new Error(`Spark job environment: ${name} = '${value}' contains whitespace`);
    conf.push([`spark.emr-serverless.driverEnv.${name}`, value], [`spark.executorEnv.${name}`, value]);
  }
  return conf.map(([name, value]) => `--conf ${name}=${value}`).join(' ');
}

/**
 * The environment of a data-preparation job, on Batch or Spark alike: what `dapt-data batch`
 * reads (PIPELINE_CONFIG, STEPS) and who it runs for (stage, environment, write prefix).
 */
export function dataJobEnvironment(job: {
  readonly configUri: string;
  readonly stage: string;
  readonly envId: string;
  readonly writePrefix: string;
  /** @default - every step ('all') */
  readonly steps?: readonly string[];
}): Record<string, string> {
  return {
    PIPELINE_CONFIG: job.configUri,
    DAPT_STAGE: job.stage,
    DAPT_ENV_ID: job.envId,
    [WRITE_PREFIX_ENV]: job.writePrefix,
    ...(job.steps && job.steps.length > 0 ? { STEPS: job.steps.join(',') } : {}),
  };
}
