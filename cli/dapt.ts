#!/usr/bin/env node
/**
 * The platform's command line, one entry point with subcommands (`npx dapt --help`):
 *
 *   npx dapt train submit|tokenize|status|logs|watch|cancel ...   training jobs on AWS Batch
 *   npx dapt eval start|status|report ...                          evaluation runs
 *   npx dapt serve register|deploy|status|undeploy|invoke ...      serving on SageMaker
 *   npx dapt cost train|env|eval ...                               what it costs, before spending
 *   npx dapt env expiry|extend|expire-now ...                      when an experiment expires (the sweeper deletes it)
 *   npx dapt pipeline start|status|watch|approve|reject ...        the experiment pipeline (data to served model)
 *   npx dapt data submit|watch ...                                 the data pipeline on EMR Serverless (Spark)
 *
 * Parsing, validation and help come from commander; help and `--dry-run` need no AWS
 * credentials (`pipeline start --dry-run` reads the deployed stacks' names). Exit codes: 0 ok, 1 a problem to fix (config, fit, stack not deployed, job
 * failed, package not deployable), 2 bad arguments, 3 `serve register` whose gate failed.
 */
import { Command, CommanderError } from 'commander';
import { costCommand } from './cost';
import { dataCommand } from './data';
import { envCommand } from './env';
import { evalCommand } from './eval';
import { pipelineCommand } from './pipeline';
import { serveCommand } from './serve';
import { type CliDeps, defaultClients, trainCommand } from './train';
import { UsageError } from './train-lib';

/** The whole program; `deps` is where output goes and how AWS clients are made (tests: moto). */
export function buildProgram(deps: CliDeps, setExitCode: (code: number) => void = () => undefined): Command {
  const program = new Command('dapt')
    .description(
      'Domain-adapt language models on AWS: operate training jobs, evaluation runs and serving of a deployed stage, and estimate their cost',
    )
    .configureOutput({ writeOut: (text) => deps.out(text.trimEnd()), writeErr: (text) => deps.err(text.trimEnd()) })
    .showHelpAfterError('(add --help for usage)')
    .exitOverride();
  program.addCommand(trainCommand(deps));
  for (const group of [
    evalCommand(deps),
    serveCommand({ ...deps, setExitCode }),
    costCommand(deps),
    envCommand(deps),
    pipelineCommand(deps),
    dataCommand({ ...deps, setExitCode }),
  ]) {
    for (const command of [group, ...group.commands]) {
      command
        .configureOutput({ writeOut: (text) => deps.out(text.trimEnd()), writeErr: (text) => deps.err(text.trimEnd()) })
        .exitOverride();
    }
    program.addCommand(group);
  }
  return program;
}

/** Runs `dapt <argv>`; resolves to the exit code. */
export async function main(argv: readonly string[], deps: CliDeps): Promise<number> {
  let code = 0;
  try {
    await buildProgram(deps, (c) => (code = c)).parseAsync([...argv], { from: 'user' });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : EXIT_USAGE;
    deps.err(`error: ${(err as Error).message}`);
    return err instanceof UsageError ? EXIT_USAGE : EXIT_PROBLEM;
  }
}

const EXIT_PROBLEM = 1;
const EXIT_USAGE = 2;

if (require.main === module) {
  void main(process.argv.slice(2), {
    out: (l) => console.log(l),
    err: (l) => console.error(l),
    clients: defaultClients,
  }).then((code) => {
    process.exitCode = code;
  });
}
