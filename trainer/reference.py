"""The reference terms of every DPO micro-batch, computed before the loop (`precompute_reference`).

The DPO loss compares the policy's per-sample MSE with the frozen reference's on the *same*
noisy latents. The reference never changes, and every input of its pass is fixed in advance: a
micro-batch's pairs come from the seeded per-epoch permutation (trainer.steps.Sampler) and its timesteps,
noise and conditioning dropout from the generator of (seed, micro-batch, process)
(train.micro_generator). So the reference MSE of each DPO micro-batch this process will run can
be computed in one no-grad pass before training, the way TRL's `precompute_ref_log_probs` does for
language models. The loop then runs the policy alone and the reference UNet leaves memory.

The terms are stored under CACHE/reference/KEY/, in chunks of CHUNK micro-batches written
atomically (an interrupted pre-pass resumes at the first missing chunk). KEY hashes everything the
values depend on: the reference UNet's weights and config, the pair set, the latent/text cache
fingerprints, the seed, batch size, process count and rank, dropout, the scheduler and mixed
precision. A rerun of the same data and base model with another β, learning rate or step count
(a sweep), and a resumed run, reuse the file; anything else gets a new key.

Total work is the same as the live reference pass (one reference forward per DPO micro-batch);
what changes is that it is done once, batched with no autograd bookkeeping, and shared by reruns.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from curator.models.tango.checkpoint import atomic_torch_save

CHUNK = 64  # micro-batches per file


def reference_key(ref_unet, scheduler, *, parts: dict) -> str:
    """A hash of the reference UNet (config and weights), the scheduler and PARTS (the batch plan)."""
    from trainer.cache import _hash_module

    h = hashlib.sha256()
    h.update(json.dumps({"unet": {k: v for k, v in dict(ref_unet.config).items() if not k.startswith("_")},
                         "scheduler": {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")},
                         **parts}, sort_keys=True, default=str).encode())
    _hash_module(h, ref_unet)
    return h.hexdigest()[:20]


class ReferenceTable:
    """Reference MSEs (2B,) of micro-batches FIRST .. FIRST + COUNT - 1 of one process."""

    def __init__(self, folder: str | Path, first: int, count: int):
        self.folder, self.first, self.count = Path(folder), first, count
        self._chunks: dict[int, torch.Tensor] = {}

    def _chunk_path(self, c: int, rows: int) -> Path:
        """A full chunk is chunk-C.pt; a shorter last one names its row count (chunk-C-ROWS.pt), so a
        longer run over the same plan (a resume with a higher max_steps) sees it as missing."""
        return self.folder / (f"chunk-{c:06d}.pt" if rows == CHUNK else f"chunk-{c:06d}-{rows}.pt")

    def _rows(self, c: int) -> int:
        return min(CHUNK, self.count - c * CHUNK)

    def _stored(self, c: int) -> Path | None:
        """The file holding chunk C's rows: the full chunk (a longer run wrote it) or one of exactly its rows."""
        for path in (self._chunk_path(c, CHUNK), self._chunk_path(c, self._rows(c))):
            if path.is_file():
                return path
        return None

    @property
    def n_chunks(self) -> int:
        return -(-self.count // CHUNK)

    def missing_chunks(self) -> list[int]:
        return [c for c in range(self.n_chunks) if self._stored(c) is None]

    def fill(self, compute: Callable[[int], torch.Tensor], *, progress: bool = True) -> int:
        """Compute the missing chunks: COMPUTE(micro) → (2B,) reference MSE. Returns micro-batches computed."""
        missing = self.missing_chunks()
        todo = sum(min(CHUNK, self.count - c * CHUNK) for c in missing)
        done = 0
        with tqdm(total=todo, desc="reference pass", unit="batch", disable=not progress or not todo) as bar:
            for c in missing:
                lo = c * CHUNK
                rows = []
                for k in range(lo, min(lo + CHUNK, self.count)):
                    rows.append(compute(self.first + k).detach().float().cpu())
                    bar.update(1)
                atomic_torch_save(torch.stack(rows), self._chunk_path(c, len(rows)))
                done += len(rows)
        return done

    def __getitem__(self, micro: int) -> torch.Tensor:
        k = micro - self.first
        if not 0 <= k < self.count:
            raise IndexError(f"micro-batch {micro} is outside the precomputed range {self.first}..{self.first + self.count - 1}")
        c = k // CHUNK
        if c not in self._chunks:
            self._chunks = {c: torch.load(self._stored(c), map_location="cpu", weights_only=True)}
        return self._chunks[c][k % CHUNK]
