import * as path from 'node:path';
import { IgnoreMode } from 'aws-cdk-lib';
import { DockerImageAsset, Platform } from 'aws-cdk-lib/aws-ecr-assets';
import type { Construct } from 'constructs';

/** The repository root: Docker build contexts and esbuild's project root. */
export const REPO_ROOT = path.join(__dirname, '..', '..');

/** Python build and tool leftovers that no image needs. */
export const PYTHON_BUILD_LEFTOVERS = [
  '**/__pycache__',
  '**/*.egg-info',
  '**/.mypy_cache',
  '**/.pytest_cache',
  '**/.ruff_cache',
];

export interface RepositoryImageProps {
  /** The Dockerfile, relative to the repository root, e.g. `containers/trainer/Dockerfile`. */
  readonly dockerfile: string;
  /** The packages under `containers/` the image copies, e.g. `['eval', 'data']`. */
  readonly packages: readonly string[];
  /** Folders of those packages left out, relative to each package, e.g. `['tests', 'bench']`. @default none */
  readonly without?: readonly string[];
}

/**
 * A linux/amd64 image built from the repository root, so it installs with the repository's pinned
 * constraints.txt: only that file and the named packages are in the build context. Every stack
 * that builds the same image passes the same props, so they share one asset hash (one build, one
 * push).
 */
export function repositoryImage(scope: Construct, id: string, props: RepositoryImageProps): DockerImageAsset {
  return new DockerImageAsset(scope, id, {
    directory: REPO_ROOT,
    file: props.dockerfile,
    platform: Platform.LINUX_AMD64,
    ignoreMode: IgnoreMode.DOCKER,
    exclude: [
      '*',
      '!constraints.txt',
      '!containers',
      'containers/*',
      ...props.packages.map((pkg) => `!containers/${pkg}`),
      ...props.packages.flatMap((pkg) => (props.without ?? []).map((folder) => `containers/${pkg}/${folder}`)),
      ...PYTHON_BUILD_LEFTOVERS,
    ],
  });
}
