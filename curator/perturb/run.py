"""Run Strategy 2 or 3 perturbations over T1 or T2 (arXiv 2404.09956 §4.1), resumably.

Requests go out on a thread pool of `concurrency` workers; only the calling thread touches the
Session. Each answer is committed as it lands (a PerturbationRequest with the raw text, plus one
Perturbation per parsed caption), so an interrupted run loses at most the requests in flight and a
rerun asks only captions that have no request yet for (strategy, model). An answer that parses to
nothing is stored too (n_parsed=0) and counted as malformed: it is never asked again. A caption
whose request failed after every retry stores nothing and is asked again by the next run.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from tqdm import tqdm

from curator.backends import Perturber
from curator.captions import t1_captions, t2_captions
from db.errors import CuratorError
from curator.perturb.llm import LLMRetriesExhausted
from curator.perturb.parse import check_strategy, clean_perturbations
from db.models import Caption, Perturbation, PerturbationRequest


@dataclass
class PerturbCounts:
    strategy: str
    model: str
    captions: int = 0  # in the caption set
    skipped: int = 0  # already had a request for (strategy, model)
    asked: int = 0  # answers stored by this run
    perturbations: int = 0  # parsed captions stored by this run
    malformed: int = 0  # answers with nothing parseable (stored, n_parsed=0)
    failed: int = 0  # requests that failed after every retry (asked again next run)
    failures: list[str] = field(default_factory=list)  # first few failure messages

    def summary(self) -> str:
        return (f"strategy {self.strategy}, model {self.model}: {self.captions} captions, "
                f"{self.skipped} already asked, {self.asked} answered ({self.perturbations} perturbations), "
                f"{self.malformed} malformed, {self.failed} failed")


def captions_for(session: Session, strategy: str) -> list[Caption]:
    """Strategy 2 runs on T1 (the latest selection), Strategy 3 on T2 (arXiv 2404.09956 §4.1)."""
    return t1_captions(session) if check_strategy(strategy) == "2" else t2_captions(session)


def run_perturbations(session: Session, perturber: Perturber, strategy: str, *,
                      captions: Sequence[Caption] | None = None, concurrency: int = 4,
                      limit: int | None = None, progress: bool = True,
                      max_consecutive_failures: int = 10) -> PerturbCounts:
    """Ask PERTURBER for every caption that has no request yet; commits per answer (see module doc).

    After ``max_consecutive_failures`` requests in a row failed after every retry, the endpoint
    is taken to be down: the run stops with a CuratorError (what landed stays committed).
    """
    strategy = check_strategy(strategy)
    if concurrency < 1:
        raise CuratorError(f"--concurrency must be at least 1, got {concurrency}")
    if limit is not None and limit < 1:
        raise CuratorError(f"--limit must be at least 1, got {limit}")
    model = perturber.model
    pool = list(captions) if captions is not None else captions_for(session, strategy)
    counts = PerturbCounts(strategy=strategy, model=model, captions=len(pool))

    done = set(session.scalars(select(PerturbationRequest.caption_id).where(
        PerturbationRequest.strategy == strategy, PerturbationRequest.model == model)))
    todo = [c for c in pool if c.id not in done]
    counts.skipped = len(pool) - len(todo)
    if limit is not None:
        todo = todo[:limit]
    if not todo:
        return counts

    pending: dict[Future, Caption] = {}
    streak = 0  # requests in a row that failed after every retry
    queue = iter(todo)
    bar = tqdm(total=len(todo), desc=f"perturb s{strategy}", unit="caption", disable=not progress)
    executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="perturb")
    try:
        def submit_next() -> None:
            cap = next(queue, None)
            if cap is not None:
                pending[executor.submit(perturber.perturb, cap.text, strategy)] = cap

        for _ in range(concurrency):  # at most `concurrency` queued, so an abort wastes little
            submit_next()
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                cap = pending.pop(fut)
                try:
                    raw, parsed = fut.result()
                except LLMRetriesExhausted as exc:
                    counts.failed += 1
                    streak += 1
                    if len(counts.failures) < 5:
                        counts.failures.append(f"caption {cap.id}: {exc}")
                    if streak >= max_consecutive_failures:
                        raise CuratorError(f"{streak} requests in a row failed after every retry (last: {exc}); "
                                           f"stopped after {counts.asked} answers, rerun to resume")
                else:
                    streak = 0
                    _store(session, counts, cap, strategy, model, raw, parsed)
                bar.update(1)
                submit_next()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return counts


def _store(session: Session, counts: PerturbCounts, cap: Caption, strategy: str, model: str,
           raw: str, parsed: list[str]) -> None:
    texts = clean_perturbations(list(parsed), cap.text)
    req = PerturbationRequest(caption_id=cap.id, strategy=strategy, model=model,
                              # PostgreSQL text cannot hold NUL: a NUL in an answer is kept visibly, as \x00
                              raw_response=(raw or "").replace("\x00", "\\x00"), n_parsed=len(texts))
    session.add(req)
    try:
        session.flush()
        session.add_all([Perturbation(request_id=req.id, caption_id=cap.id, strategy=strategy, model=model,
                                      position=i, text=t) for i, t in enumerate(texts)])
        session.commit()
    except IntegrityError:  # another process stored this caption meanwhile: theirs stands
        session.rollback()
        counts.skipped += 1
        return
    counts.asked += 1
    counts.perturbations += len(texts)
    counts.malformed += not texts

