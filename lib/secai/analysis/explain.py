"""Explaining findings: each finding/1 becomes its analysis/1, in batches (what secai-analyze runs; the
command: secai.commands.analyze).

For each finding: its code context under the source root (secai.analysis.context), its similar past
findings when an index is given (secai.analysis.similar, looked up once for all, with the past
analyses the index keeps), its rule's knowledge (secai.analysis.rules), then the cache (secai.cache:
keyed by finding id and content, producer, context and similar ids; with a model also by the prompt
itself) or, on a miss, the kb composition (secai.analysis.compose) — replaced by the model's reply
when an MLX model is given and its reply is usable (secai.analysis.mlx, whose prompt carries the rule
knowledge and the past analyses; a fallback is recorded in producer.fallback).
Every secret of the input (every finding's secret hash, since a secret one scanner hashes may sit
unhashed in another's code) is blanked in every field of every record written or served.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from itertools import islice
from pathlib import Path

from secai.analysis import compose as kb_backend
from secai.analysis.context import under_root
from secai.cache import Cache, content_hash, key
from secai.secrets import scrub_tree


@dataclass
class Stats:
    """What `analyses` did, for the caller's summary."""
    cached: int = 0      # served from the cache
    analysed: int = 0    # computed (and cached)
    fallback: int = 0    # the model's reply was unusable: the kb analysis was kept
    context: int = 0     # with code context
    refused: int = 0     # paths refused under the source root

    def add(self, other: Stats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def similar_findings(findings: list[dict], index: str, k: int) -> dict[str, list[dict]]:
    """{finding id: its k most similar indexed findings}, in one look-up (only findings new to the
    index are embedded); a hit whose past analysis the index keeps carries it as `analysis` (for the
    prompt only: similar[] records ids, scores, rules and titles)."""
    from secai.analysis.similar import SimilarityIndex

    index = SimilarityIndex.load(index)
    found = index.similar(findings, k)
    return {f["id"]: [{**h, **({"analysis": a} if (a := index.analysis(h["id"])) else {})} for h in s]
            for f, s in zip(findings, found)}


PER_WORKER = 500  # findings a worker process is worth starting for (kb: about a second of work)


def worker_count(setting: int, findings: int, model=None) -> int:
    """The processes that analyse `findings` findings: the `setting` (analyze.workers; 0: one per
    CPU this process may use), at most one per PER_WORKER findings, and 1 with a model (which
    generates for a whole batch at once in this process)."""
    if model is not None:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(setting or cpus, findings // PER_WORKER))


def analyses(findings: list[dict], *, backend: str, cache: Cache, stats: Stats, log: Callable[[str], None],
             model=None, root: Path | None = None, context_lines: int = 0, batch_size: int = 8,
             similar: dict[str, list[dict]] | None = None, semgrep_rules: Path | None = None,
             semgrep: Path | None = None, progress: Callable[[list[dict]], Iterable[dict]] | None = None,
             workers: int = 1) -> Iterator[dict]:
    """The analysis/1 record of every finding, in order, `batch_size` at a time (a batch is what an
    MLX `model` generates for together). `similar`: see similar_findings; `semgrep_rules`: the rule
    files the semgrep reports were made with (secai.analysis.rules); `semgrep`: the executable that
    makes a rule's own autofix (secai.analysis.autofix; none without it); `log` gets a warning per
    path refused under `root`. `workers` > 1 (the kb backend only): the batches are analysed in that
    many processes (_in_workers), with the same records, stats and warnings, in the same order."""
    hashes = tuple({f["secret"]["sha256"] for f in findings if "secret" in f})
    fixed = {"backend": backend, "root": root, "context_lines": context_lines, "hashes": hashes,
             "semgrep_rules": semgrep_rules, "semgrep": semgrep}
    if workers > 1 and model is None:
        yield from _in_workers(findings, workers, batch_size, cache, stats, log, similar, fixed, progress)
        return
    it = iter(progress(findings) if progress else findings)
    while chunk := list(islice(it, batch_size)):
        yield from _batch(chunk, model=model, cache=cache, similar=similar, stats=stats, log=log, **fixed)


# ---------------------------------------------------------------- worker processes (kb backend)

_WORK: dict = {}  # a worker's cache and its share of analyses()'s arguments, "fixed" (set by _start)


def _pool(workers: int, cache: Cache, fixed: dict):
    """`workers` processes that analyse batches (_work); a worker that dies (killed, out of memory)
    is an error of the run (BrokenProcessPool), never a wait. On Linux they are forked from a
    process of one thread, and start with what it has loaded; else they are spawned (forking where
    other threads run, or on macOS where Apple's frameworks may hold some, is unsafe)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    fork = sys.platform.startswith("linux") and threading.active_count() == 1
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork" if fork else "spawn"),
                               initializer=_start, initargs=(os.getpid(), cache.dir, cache.kind, fixed))


def _in_workers(findings, workers, batch_size, cache, stats, log, similar, fixed, progress) -> Iterator[dict]:
    """The records of `findings`, analysed batch by batch in `workers` processes (_pool) and given
    back in order; each batch's stats, warnings and corrupt cache entries are the parent's as they
    arrive. While the pool runs SIGPIPE is ignored: a worker that dies leaves the pool's pipes
    without readers, and that is the pool's error (BrokenProcessPool), not a silent end of the
    command (secai.cli gives a broken stdout its quiet SIGPIPE end back)."""
    batches = [(chunk, {f["id"]: similar[f["id"]] for f in chunk} if similar is not None else None)
               for chunk in (findings[i:i + batch_size] for i in range(0, len(findings), batch_size))]
    per_task = max(1, min(64 // batch_size, len(batches) // (4 * workers)))  # batches sent at once: ~64 findings

    def done(results) -> Iterator[dict]:
        for records, part, warnings, corrupt in results:
            stats.add(part)
            cache.corrupt += corrupt
            for line in warnings:
                log(line)
            yield from records

    main = threading.current_thread() is threading.main_thread()
    pipe = signal.signal(signal.SIGPIPE, signal.SIG_IGN) if main else None
    try:
        pool = _pool(workers, cache, fixed)
        try:  # all submitted at once: the workers start before a progress bar starts its thread
            results = done(pool.map(_work, batches, chunksize=per_task))
            yield from progress(results) if progress else results
        finally:  # on an error or Ctrl-C too: what has not begun never does
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        if pipe is not None:
            signal.signal(signal.SIGPIPE, pipe)


def _start(parent: int, cache_dir, kind, fixed) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops the pool, and says so once
    if sys.platform.startswith("linux"):  # a parent that is killed takes its workers with it (PR_SET_PDEATHSIG)
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)
        if os.getppid() != parent:  # it died before that was set
            os._exit(1)
    _WORK.update(fixed=fixed, cache=Cache(cache_dir, kind))


def _work(batch) -> tuple[list[dict], Stats, list[str], int]:
    chunk, similar = batch
    cache, stats, warnings = _WORK["cache"], Stats(), []
    before = cache.corrupt
    records = _batch(chunk, model=None, similar=similar, stats=stats, log=warnings.append, cache=cache,
                     **_WORK["fixed"])
    return records, stats, warnings, cache.corrupt - before


def _batch(findings, *, backend, model, root, context_lines, cache, hashes, similar, semgrep_rules, semgrep, stats,
           log) -> list[dict]:
    from secai.analysis.autofix import autofixes
    from secai.analysis.mlx import PROMPT_VERSION, messages
    from secai.analysis.rules import rule_knowledge

    kb_version = kb_backend.kb_version()
    producer = {"backend": backend, "kb_version": kb_version,
                "prompt_version": PROMPT_VERSION if model else kb_backend.COMPOSER_VERSION}
    if model:
        producer.update(model=model.path, model_hash=model.hash)
        if model.adapter:
            producer.update(adapter=model.adapter, adapter_hash=model.adapter_hash)
    out, todo = [], []
    pairs = [(f, _context(f, root, context_lines, hashes, stats, log)) for f in (under_root(f, root) for f in findings)]
    made = autofixes(pairs, root, semgrep, semgrep_rules, Cache(cache.dir / "autofix" if cache.dir else None))
    for (finding, context), autofix in zip(pairs, made):
        hits = similar[finding["id"]] if similar is not None else []  # secai-index: ids key the cache
        sim = [{n: v for n, v in h.items() if n != "analysis"} for h in hits]
        rule = rule_knowledge(finding, semgrep_rules)
        # the model's prompt (rule knowledge and past analyses in it) keys what the model wrote; no secret in it
        chat = scrub_tree(messages(finding, context, hits, rule), hashes) if model else None
        k = key(finding["id"], content_hash(finding), producer, context, key(rule),  # the rule's knowledge too
                *([[s["id"] for s in sim]] if similar is not None else []), *([chat] if chat else []),
                *([autofix] if autofix else []))  # the fix semgrep made: a new one is a new analysis
        record = cache.get(k)
        if record is None:
            record = {"schema": "analysis/1", "id": finding["id"], "finding": finding, "similar": sim,
                      "producer": dict(producer),
                      "analysis": kb_backend.compose(finding, context, root, rule, autofix)}
            if context:
                record["code_context"] = context
            todo.append((k, record, chat))
        else:  # computed from this finding's content; the record carries this run's `source`
            record = scrub_tree({**record, "finding": finding}, hashes)
            stats.cached += 1
        out.append(record)
    if model and todo:
        from secai.analysis.mlx import parse_reply

        for (_, record, _), reply in zip(todo, model.generate([chat for _, _, chat in todo])):
            analysis, why = parse_reply(reply)
            if analysis is None:
                record["producer"]["fallback"] = why
                stats.fallback += 1
            else:
                record["analysis"] = analysis
    for k, record, _ in todo:  # no secret in any field, whoever wrote it: scanner, code or model (secai.secrets)
        record.update(scrub_tree(record, hashes))  # in place: `out` holds the same record
        cache.put(k, record)
        stats.analysed += 1
    return out


def _context(finding, root, context_lines, hashes, stats, log):
    if root is None:
        return None
    from secai.analysis.context import read_context

    context, skip = read_context(finding, root, context_lines, hashes=hashes)
    if context:
        stats.context += 1
    elif skip.refused:
        stats.refused += 1
        log(f"warning: {finding['id']}: {skip}")
    return context
