"""Stateless sampling of token windows from a prepared split.

A window is seq_len + 1 consecutive tokens (inputs and shifted targets). `train_batch` is a pure
function of (seed, step, process): the window starts of a step's global batch come from
`SeedSequence([seed, step, 0])`, whose output NumPy keeps fixed across versions, and process p of
P reads rows [p B / P, (p + 1) B / P) of it. So a resumed run reads exactly the batches an
uninterrupted one would, whatever the number of processes. Windows may cross document
boundaries (the EOS between documents is in the stream).
A mixture of splits (`mixture_batch`) draws each row's split from `SeedSequence([seed, step, 1])`
with probabilities proportional to the weights, and its start as above, within that split; a
mixture of one split is `train_batch`.
`eval_batches` gives fixed, evenly spaced, non-overlapping windows, the same at every evaluation.
"""
import logging

import numpy as np

from data.dataset import Split


def _title(split: Split) -> str:
    return f"{'validation' if split.name == 'val' else split.name} split of {split.corpus}"


def train_batch(split: Split, *, seed: int, step: int, batch_size: int, seq_len: int,
                process_index: int = 0, process_count: int = 1) -> np.ndarray:
    """Process `process_index`'s rows of the global batch of `step`: int32
    [batch_size / process_count, seq_len + 1], starts uniform in [0, num_tokens - seq_len - 1].

    The global batch depends on (seed, step) only, so a run resumed on another number of
    processes reads the same data; each process reads only its own windows.
    """
    return mixture_batch([split], [1.0], seed=seed, step=step, batch_size=batch_size,
                         seq_len=seq_len, process_index=process_index,
                         process_count=process_count)


def mixture_batch(splits, weights, *, seed: int, step: int, batch_size: int, seq_len: int,
                  process_index: int = 0, process_count: int = 1) -> np.ndarray:
    """`train_batch` over several splits: row r of the global batch comes from split k with
    probability weights[k] / sum(weights), independently of the other rows."""
    for split in splits:
        if split.num_tokens - seq_len < 1:
            raise ValueError(f"{_title(split)} has {split.num_tokens} tokens < seq_len+1="
                             f"{seq_len + 1}: lower data.seq_len or use a larger corpus")
    if batch_size % process_count:
        raise ValueError(f"a batch of {batch_size} does not split over {process_count} "
                         "processes")
    rows = batch_size // process_count
    mine = slice(process_index * rows, (process_index + 1) * rows)
    # The trailing 0 is a stream id (it was the process index when processes drew separate
    # batches), which keeps the data order of earlier single-process runs.
    state = np.random.SeedSequence([seed, step, 0]).generate_state(batch_size, np.uint64)[mine]
    which = np.zeros(rows, np.int64)
    if len(splits) > 1:
        draws = np.random.SeedSequence([seed, step, 1]).generate_state(batch_size, np.uint64)
        uniform = (draws[mine] >> np.uint64(11)).astype(np.float64) * 2.0 ** -53  # in [0, 1)
        edges = np.cumsum(weights, dtype=np.float64) / np.sum(weights, dtype=np.float64)
        which = np.minimum(np.searchsorted(edges, uniform, side="right"), len(splits) - 1)
    windows = np.empty((rows, seq_len + 1), np.int32)
    for k, split in enumerate(splits):
        chosen = which == k
        if chosen.any():
            # modulo bias < num_tokens / 2**64: negligible
            starts = state[chosen] % np.uint64(split.num_tokens - seq_len)
            windows[chosen] = split.windows(starts.astype(np.int64), seq_len + 1)
    return windows


def eval_batches(split: Split, *, seq_len: int, batch_size: int,
                 num_batches: int) -> list[np.ndarray]:
    """Up to `num_batches` int32 batches [batch_size, seq_len + 1] of non-overlapping windows.

    If the split holds fewer than num_batches * batch_size windows, it returns as many whole
    batches as fit (and logs a warning); fewer than one batch is an error.
    """
    length = seq_len + 1
    fit = split.num_tokens // length
    if fit == 0:
        raise ValueError(f"{_title(split)} has {split.num_tokens} tokens < seq_len+1={length}: "
                         "lower data.seq_len or raise data.val_fraction")
    count = min(num_batches, fit // batch_size)
    if count == 0:
        raise ValueError(f"{_title(split)} has {split.num_tokens} tokens: "
                         f"room for {fit} windows of seq_len+1={length}, fewer than one batch "
                         f"of {batch_size}: lower data.eval_batch_size or data.seq_len, or raise "
                         f"data.val_fraction")
    if count < num_batches:
        logging.getLogger(__name__).warning("%s has room for %d of the %d evaluation batches "
                                            "requested", _title(split), count, num_batches)
    n = count * batch_size
    starts = np.arange(n, dtype=np.int64) * (split.num_tokens - length) // max(n - 1, 1)
    windows = split.windows(starts, length)
    return [windows[i * batch_size:(i + 1) * batch_size] for i in range(count)]
