import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { type RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as glue from 'aws-cdk-lib/aws-glue';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { EVAL_PREFIXES } from '../../lambda/shared/layout';
import { REPO_ROOT } from './repository-image';

/** Column list of the Athena table, owned by the Python aggregator that writes the rows. */
export const ATHENA_SCHEMA_FILE = path.join(REPO_ROOT, 'containers', 'eval', 'src', 'dapt_eval', 'athena_schema.json');

export interface ResultsTableProps {
  /** Glue database of the lake (its `glueDatabase` parameter). */
  readonly databaseName: string;
  /** The eval bucket; rows are read from its `athena/` prefix, one folder per run. */
  readonly evalBucket: s3.IBucket;
  /** What happens to the table definition when its stack goes (the rows stay in S3 either way). */
  readonly removalPolicy: RemovalPolicy;
  /**
   * Name of the table in the database.
   * @default 'results'
   */
  readonly tableName?: string;
}

/**
 * The Athena table of per-unit evaluation results (one row per item x model x prompt), partitioned
 * by run id through partition projection, so a new run needs no crawler or `MSCK REPAIR`. The Glue
 * table is this construct's `Default` child: it keeps the logical id it had at the stack's top level.
 */
export class ResultsTable extends Construct {
  readonly tableName: string;

  constructor(scope: Construct, id: string, props: ResultsTableProps) {
    super(scope, id);
    this.tableName = props.tableName ?? DEFAULT_TABLE_NAME;
    const location = props.evalBucket.s3UrlForObject(EVAL_PREFIXES.athena);
    new glue.CfnTable(this, 'Default', {
      catalogId: Stack.of(this).account,
      databaseName: props.databaseName,
      tableInput: {
        name: this.tableName,
        description: 'One row per evaluated unit (item x model x prompt), written by the aggregator',
        tableType: 'EXTERNAL_TABLE',
        partitionKeys: [{ name: 'run_id', type: 'string' }],
        parameters: {
          classification: 'json',
          'projection.enabled': 'true',
          'projection.run_id.type': 'injected',
          'storage.location.template': `${location}run_id=\${run_id}/`,
        },
        storageDescriptor: {
          location,
          columns: readAthenaColumns(),
          inputFormat: 'org.apache.hadoop.mapred.TextInputFormat',
          outputFormat: 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat',
          serdeInfo: { serializationLibrary: 'org.openx.data.jsonserde.JsonSerDe' },
        },
      },
    }).applyRemovalPolicy(props.removalPolicy);
  }
}

/** Glue columns from the aggregator's schema file; run_id is the partition, not a column. */
function readAthenaColumns(): glue.CfnTable.ColumnProperty[] {
  const columns = JSON.parse(readFileSync(ATHENA_SCHEMA_FILE, 'utf8')) as { name: string; type: string }[];
  return columns.filter((c) => c.name !== 'run_id').map((c) => ({ name: c.name, type: c.type }));
}

const DEFAULT_TABLE_NAME = 'results';
