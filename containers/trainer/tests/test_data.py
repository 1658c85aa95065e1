"""Readers, quarantine, chat-template label masking, the mixture schedule and packing."""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from dapt_data.manifest import SourceData, build_manifest, manifest_bytes
from dapt_data.records import Origin

from conftest import (
    BUCKET,
    build_tokenizer,
    completion_rows,
    instruction_rows,
    sentence,
    shifted,
    tokenized,
    write_jsonl,
)
from dapt_trainer.config import DataConfig, SourceConfig, dump_config, parse_config
from dapt_trainer.data.mixture import MixtureSampler, target_weights
from dapt_trainer.data.readers import ManifestError, read_source, resolve_data
from dapt_trainer.data.stream import PackedStream, pad_id
from dapt_trainer.data.tokenize import IGNORE_INDEX, encode_completions, encode_instruction


def test_malformed_rows_are_quarantined_with_line_and_reason(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"text": "the site builder"},
            "{not json",
            {"body": "no text field"},
            {"text": ""},
            "[1, 2]",
            {"text": "a page"},
        ],
    )
    rows = read_source(SourceConfig(name="kb", kind="completion", paths=[str(path)]))
    assert [r["text"] for r in rows.rows] == ["the site builder", "a page"]
    found = {(q.line, q.reason.split(":")[0]) for q in rows.quarantined}
    assert found == {
        (2, "invalid JSON"),
        (3, "field 'text' missing or not a string"),
        (4, "field 'text' is empty"),
        (5, "row is list, expected an object"),
    }
    missing = read_source(
        SourceConfig(name="kb", kind="completion", paths=[str(tmp_path / "absent.jsonl")])
    )
    assert missing.quarantined[0].reason.startswith("file unreadable")


def test_invalid_utf8_is_quarantined_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"text": "the caf\xe9 page"}\n{"text": "a page"}\n')
    rows = read_source(SourceConfig(name="kb", kind="completion", paths=[str(path)]))
    assert [r["text"] for r in rows.rows] == ["a page"]
    [q] = rows.quarantined
    assert (q.line, q.reason) == (
        1,
        "invalid UTF-8 at byte 17 of the line: invalid continuation byte",
    )


def test_instruction_rows_are_checked(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "sft.jsonl",
        [
            {"prompt": "q", "response": "a"},
            {"prompt": "q"},
            {"messages": [{"role": "user", "content": "q"}]},
            {
                "messages": [
                    {"role": "robot", "content": "q"},
                    {"role": "assistant", "content": "a"},
                ]
            },
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
        ],
    )
    rows = read_source(SourceConfig(name="sft", kind="instruction", paths=[str(path)]))
    assert len(rows.rows) == 2
    assert [q.line for q in rows.quarantined] == [2, 3, 4]
    assert "no assistant turn" in rows.quarantined[1].reason
    assert "messages[0].role = 'robot'" in rows.quarantined[2].reason


def test_s3_jsonl_parquet_and_manifest(s3: Any, tmp_path: Path) -> None:
    s3.put_object(Bucket=BUCKET, Key="data/a.jsonl", Body=b'{"text": "a page"}\n{oops\n')
    table = pa.table({"text": ["the blog", "a theme"]})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    s3.put_object(Bucket=BUCKET, Key="data/part-0.parquet", Body=buf.getvalue())
    manifest = {"files": ["part-0.parquet", {"path": f"s3://{BUCKET}/data/a.jsonl"}]}
    s3.put_object(Bucket=BUCKET, Key="data/manifest.json", Body=json.dumps(manifest).encode())
    source = SourceConfig(
        name="kb", kind="completion", manifest=f"s3://{BUCKET}/data/manifest.json"
    )
    rows = read_source(source)
    assert [r["text"] for r in rows.rows] == ["the blog", "a theme", "a page"]
    assert [(q.file, q.line) for q in rows.quarantined] == [(f"s3://{BUCKET}/data/a.jsonl", 2)]


def test_chat_template_masks_everything_but_responses() -> None:
    tokenizer = build_tokenizer()
    row = {
        "messages": [
            {"role": "user", "content": "add a page"},
            {"role": "assistant", "content": "publish the draft"},
            {"role": "user", "content": "and the blog"},
            {"role": "assistant", "content": "upload an image"},
        ]
    }
    ids, learn = encode_instruction(row, tokenizer)
    targets = shifted(ids, learn)
    learned = [tokenizer.convert_ids_to_tokens(t) for t in targets if t != IGNORE_INDEX]
    # Each response and its end-of-turn token; prompts, roles and the generation prompt never.
    assert learned == ["publish", "the", "draft", "</s>", "upload", "[UNK]", "image", "</s>"]
    [completion] = encode_completions(["the blog post"], tokenizer)
    assert tokenizer.convert_ids_to_tokens(completion) == ["<s>", "the", "blog", "post", "</s>"]


def _weights_data(domain_share: float | None) -> DataConfig:
    return DataConfig(
        domain_share=domain_share,
        sources=[
            SourceConfig(name="kb", kind="completion", group="domain", paths=["a"], weight=3),
            SourceConfig(name="faq", kind="completion", group="domain", paths=["b"], weight=1),
            SourceConfig(name="web", kind="completion", group="public", paths=["c"], weight=1),
        ],
    )


def test_domain_share_splits_mass_between_groups() -> None:
    assert target_weights(_weights_data(None)) == pytest.approx([0.6, 0.2, 0.2])
    assert target_weights(_weights_data(0.02)) == pytest.approx([0.015, 0.005, 0.98])


def test_mixture_hits_token_shares_at_every_prefix_and_resumes() -> None:
    """Tolerance: a source's token count never drifts from its target by more than
    (sources - 1) x the longest document (here 2 x 400 tokens): the share error after T tokens
    is at most 800 / T (0.02 of a 40k-token run, 0.00008 of a 10M-token one)."""
    weights = target_weights(_weights_data(0.02))
    lengths = [[50 + (i * 37) % 350 for i in range(n)] for n in (30, 11, 500)]
    sampler = MixtureSampler(weights, [len(x) for x in lengths], seed=7)
    picks: list[tuple[int, int]] = []
    for _ in range(3000):
        s = sampler.next_source()
        i = sampler.next_example(s)
        sampler.charge(s, lengths[s][i])
        picks.append((s, i))
        total = sum(sampler.consumed)
        for c, w in zip(sampler.consumed, weights, strict=True):
            assert abs(c - w * total) <= 800 + 1e-6
    shares = sampler.shares()
    assert shares == pytest.approx(weights, abs=800 / sum(sampler.consumed))
    assert abs(shares[0] + shares[1] - 0.02) < 0.001
    assert sampler.epochs[1] > 0  # the small domain source was repeated, in a new order

    resumed = MixtureSampler(weights, [len(x) for x in lengths], seed=7)
    first = MixtureSampler(weights, [len(x) for x in lengths], seed=7)
    for s, i in picks[:1234]:
        assert (first.next_source(), first.next_example(s)) == (s, i)
        first.charge(s, lengths[s][i])
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))  # plain JSON data
    for s, i in picks[1234:1500]:
        got = resumed.next_source()
        assert (got, resumed.next_example(got)) == (s, i)
        resumed.charge(s, lengths[s][i])


def _stream(
    tmp_path: Path, packing: bool, seq_len: int = 64, window: int = 64, completion: bool = True
) -> PackedStream:
    write_jsonl(tmp_path / "c.jsonl", completion_rows(5, 30, lo=3, hi=90))
    rng = random.Random(6)
    chats = instruction_rows(6, 10) + [  # and examples of many lengths, as real ones are
        {"prompt": sentence(rng, rng.randint(2, 20)), "response": sentence(rng, rng.randint(1, 40))}
        for _ in range(30)
    ]
    write_jsonl(tmp_path / "i.jsonl", chats)
    sources = [SourceConfig(name="i", kind="instruction", paths=[str(tmp_path / "i.jsonl")])]
    if completion:
        sources.append(SourceConfig(name="c", kind="completion", paths=[str(tmp_path / "c.jsonl")]))
    data = DataConfig(seq_len=seq_len, packing=packing, pack_window=window, sources=sources)
    tokenizer = build_tokenizer()
    return PackedStream(data, tokenized(data, tokenizer, tmp_path / "cache"), 0, pad_id(tokenizer))


def test_packing_resets_positions_and_fills_rows(tmp_path: Path) -> None:
    packed, unpacked = _stream(tmp_path, True), _stream(tmp_path, False)
    rows = [packed.next_row() for _ in range(40)]
    for row in rows:
        ids, targets, positions, _ = row.as_lists()
        assert len(ids) == len(targets) == len(positions) == 64
        starts = [i for i, p in enumerate(positions) if p == 0]
        assert starts[0] == 0
        # No target crosses a document start: the token before a start predicts nothing
        # unless it is a completion chunk continuing in the next row (not inside this row).
        for i in starts[1:]:
            assert targets[i - 1] == IGNORE_INDEX
    for _ in range(40):
        unpacked.next_row()
    # Completion text is cut to fill what instruction examples leave: rows are full.
    assert packed.packing_efficiency() == 1.0
    assert unpacked.packing_efficiency() < 0.7  # one document per row


def test_best_fit_window_fills_rows_of_uncut_instruction_examples(tmp_path: Path) -> None:
    """Instruction examples are never cut. In draw order (window 1) a row closes as soon as the
    next example does not fit; a window of drawn-ahead examples tops rows up. The gap left is
    bounded by the shortest example (17 tokens here, 3% of a 512-token row)."""
    efficiency = {}
    for window in (1, 8, 64):
        stream = _stream(
            tmp_path / f"w{window}", True, seq_len=512, window=window, completion=False
        )
        whole = {
            tuple(s.ids(d, 0, s.length(d)).tolist()) for s in stream.sources for d in range(40)
        }
        seen = set()
        for _ in range(100):
            ids, _, positions, n_real = stream.next_row().as_lists()
            starts = [i for i, p in enumerate(positions[:n_real]) if p == 0]
            for a, b in zip(starts, [*starts[1:], n_real], strict=True):
                seen.add(tuple(ids[a:b]))
        efficiency[window] = stream.packing_efficiency()
        assert seen == whole  # every example appears, and only whole
    assert efficiency[1] < 0.97 < min(efficiency[8], efficiency[64])
    assert efficiency[64] > 0.985, efficiency


def test_stream_state_resumes_the_same_rows(tmp_path: Path) -> None:
    stream = _stream(tmp_path, True)
    for _ in range(13):
        stream.next_row()
    state = json.loads(json.dumps(stream.state_dict()))  # plain JSON data
    expected = [stream.next_row().as_lists() for _ in range(10)]
    resumed = _stream(tmp_path, True)
    resumed.load_state_dict(state)
    assert [resumed.next_row().as_lists() for _ in range(10)] == expected


def _published_manifest(tmp_path: Path, kb_lines: str, target: float | None = 0.5) -> str:
    """A manifest written with the data pipeline's own writer over real files."""
    (tmp_path / "kb.jsonl").write_text(kb_lines, encoding="utf-8")
    (tmp_path / "web.jsonl").write_text(
        "".join(json.dumps({"text": f"public text number {i}"}) + "\n" for i in range(8)),
        encoding="utf-8",
    )
    sources = [
        SourceData(
            name,
            "completion",
            origin,
            name + ".jsonl",
            hashlib.sha256((tmp_path / f"{name}.jsonl").read_bytes()).hexdigest(),
            sum(1 for line in (tmp_path / f"{name}.jsonl").read_text().split("\n") if line),
            tokens,
        )
        for name, origin, tokens in (("kb", Origin.DOMAIN, 6), ("web", Origin.PUBLIC, 32))
    ]
    manifest = build_manifest("mix", sources, target, {"kind": "whitespace"}, "2" * 64)
    (tmp_path / "v1.json").write_bytes(manifest_bytes(manifest))
    return str(tmp_path / "v1.json")


KB_LINES = '{"text": "connect a domain"}\n{"text": "add a page"}\n'


def test_reads_the_files_a_dapt_data_manifest_lists_for_the_source(tmp_path: Path) -> None:
    # GIVEN a manifest written by the data pipeline itself (the contract between the packages)
    path = _published_manifest(tmp_path, KB_LINES)
    # WHEN the trainer reads the domain source through it
    rows = read_source(SourceConfig(name="kb", kind="completion", manifest=path))
    # THEN it gets that source's files, and a wrong name or kind is an error, never an empty source
    assert [r["text"] for r in rows.rows] == ["connect a domain", "add a page"]
    with pytest.raises(
        ManifestError, match=r"has no source named 'chats' \(it has \['kb', 'web'\]\)"
    ):
        read_source(SourceConfig(name="chats", kind="completion", manifest=path))
    with pytest.raises(ManifestError, match="has kind 'completion', the config says 'instruction'"):
        read_source(SourceConfig(name="kb", kind="instruction", manifest=path))


def test_a_manifest_gives_each_source_its_origin_and_token_share(tmp_path: Path) -> None:
    # GIVEN a manifest whose weights make the domain half of the training tokens
    path = _published_manifest(tmp_path, KB_LINES, target=0.5)
    data = DataConfig(
        sources=[
            SourceConfig(name="kb", kind="completion", manifest=path),
            SourceConfig(name="web", kind="completion", manifest=path),
        ]
    )
    # WHEN the trainer resolves the sources without a group or weight of their own
    resolved = resolve_data(data)
    # THEN the domain source counts as domain and the shares are the manifest's mix
    assert [s.group for s in resolved.sources] == ["domain", "public"]
    assert target_weights(resolved) == pytest.approx([0.5, 0.5])


def test_a_saved_config_still_takes_group_and_share_from_the_manifest(tmp_path: Path) -> None:
    # A checkpoint's config.yaml (dump_config) writes every field: unset must stay unset.
    path = _published_manifest(tmp_path, KB_LINES, target=0.5)
    raw = {
        "experiment": "x",
        "stages": [
            {
                "name": "s",
                "model": {"path": "m"},
                "steps": 2,
                "data": {"sources": [{"name": "kb", "kind": "completion", "manifest": path}]},
            }
        ],
    }
    saved = parse_config(yaml.safe_load(dump_config(parse_config(raw))))
    [kb] = resolve_data(saved.stages[0].data).sources
    assert kb.group == "domain"
    assert kb.weight == pytest.approx(0.5)


def test_a_group_that_contradicts_the_manifest_origin_is_an_error(tmp_path: Path) -> None:
    path = _published_manifest(tmp_path, KB_LINES)
    data = DataConfig(
        sources=[SourceConfig(name="kb", kind="completion", manifest=path, group="public")]
    )
    with pytest.raises(ManifestError, match="group 'public' contradicts origin 'domain'"):
        resolve_data(data)


def test_a_row_appended_after_publication_is_refused(tmp_path: Path) -> None:
    # GIVEN a published manifest, then a row appended to its file
    path = _published_manifest(tmp_path, KB_LINES)
    with (tmp_path / "kb.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"text": "a row nobody published"}\n')
    # WHEN the trainer reads the source THEN it names the file, both hashes and both counts
    changed = r"hash to sha256 [0-9a-f]{64}, the manifest says"
    with pytest.raises(ManifestError, match=changed) as err:
        read_source(SourceConfig(name="kb", kind="completion", manifest=path))
    assert "the files hold 3 records, the manifest says 2" in str(err.value)


def test_a_missing_or_broken_manifest_names_itself(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"manifest .*nope.json \(source 'kb'\) does not exist"):
        resolve_data(
            DataConfig(
                sources=[
                    SourceConfig(name="kb", kind="completion", manifest=str(tmp_path / "nope.json"))
                ]
            )
        )
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ManifestError, match="is not JSON"):
        read_source(SourceConfig(name="kb", kind="completion", manifest=str(tmp_path / "bad.json")))


def test_train_on_prompt_learns_every_token_of_an_instruction_example(tmp_path: Path) -> None:
    tokenizer = build_tokenizer()
    path = write_jsonl(tmp_path / "sft.jsonl", instruction_rows(3, 4))
    rows = [encode_instruction(row, tokenizer) for row in instruction_rows(3, 4)]
    for train_on_prompt in (False, True):
        data = DataConfig(
            seq_len=512,
            packing=False,
            sources=[
                SourceConfig(
                    name="sft",
                    kind="instruction",
                    paths=[str(path)],
                    train_on_prompt=train_on_prompt,
                )
            ],
        )
        [source] = tokenized(data, tokenizer, tmp_path / "cache")  # one cache for both
        stream = PackedStream(data, [source], 0, pad_id(tokenizer))
        by_ids = {tuple(ids): learn for ids, learn in rows}
        for _ in range(4):
            ids, targets, _, n_real = stream.next_row().as_lists()
            learn = by_ids[tuple(ids[:n_real])]
            everything = [True] * n_real
            want = shifted(ids[:n_real], everything if train_on_prompt else learn)
            assert targets[:n_real] == want
    assert any(not all(learn) for _, learn in rows)  # the default masks something out
    with pytest.raises(ValueError, match="train_on_prompt = True: only for 'instruction'"):
        SourceConfig(name="c", kind="completion", paths=["a"], train_on_prompt=True)
