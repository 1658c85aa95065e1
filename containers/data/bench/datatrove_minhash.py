"""datatrove's MinHash deduplication on one JSONL, one worker: the comparison run of
`bench_pipeline.py`. Runs in its own venv (`pip install 'datatrove[processing]'`), since
datatrove is not a dependency of dapt-data.

    python datatrove_minhash.py CORPUS.jsonl WORK_DIR
"""

import sys
import time

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter


def main() -> None:
    corpus, work = sys.argv[1], sys.argv[2]
    # 16 buckets x 8 hashes = 128 permutations and 5-word shingles, as dapt-data's defaults.
    config = MinhashConfig(n_grams=5, num_buckets=16, hashes_per_bucket=8)

    def reader() -> JsonlReader:
        return JsonlReader(corpus.rsplit("/", 1)[0], glob_pattern=corpus.rsplit("/", 1)[1])

    stages = [
        [reader(), MinhashDedupSignature(output_folder=f"{work}/sigs", config=config)],
        [
            MinhashDedupBuckets(
                input_folder=f"{work}/sigs", output_folder=f"{work}/buckets", config=config
            )
        ],
        [
            MinhashDedupCluster(
                input_folder=f"{work}/buckets", output_folder=f"{work}/remove_ids", config=config
            )
        ],
        [
            reader(),
            MinhashDedupFilter(input_folder=f"{work}/remove_ids"),
            JsonlWriter(f"{work}/out"),
        ],
    ]
    for index, pipeline in enumerate(stages):
        start = time.perf_counter()
        tasks = config.num_buckets if index == 1 else 1
        LocalPipelineExecutor(
            pipeline=pipeline, tasks=tasks, workers=1, logging_dir=f"{work}/logs/{index}"
        ).run()
        print(f"  datatrove stage {index}: {time.perf_counter() - start:.2f} s", flush=True)


if __name__ == "__main__":
    main()
