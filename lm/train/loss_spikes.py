"""Loss-spike counting on the host, from every step's training loss.

A spike starts at a step whose loss exceeds `ratio` times the median of the previous `window`
steps' losses, when the step before was not already in one; the count is what metrics.jsonl
logs as train/loss_spikes (the instabilities Su et al. 2025 count in MX training). The window
restarts empty on resume, so a spike within `window` steps after a resume is not counted.
"""
import collections
import statistics


class LossSpikes:
    def __init__(self, window: int, ratio: float, count: int = 0):
        self.recent = collections.deque(maxlen=window)
        self.ratio = ratio
        self.count = count
        self.in_spike = False

    def update(self, loss: float) -> int:
        """Takes one step's loss; returns the number of spikes so far."""
        full = len(self.recent) == self.recent.maxlen
        spike = full and loss > self.ratio * statistics.median(self.recent)
        self.count += spike and not self.in_spike
        self.in_spike = spike
        self.recent.append(loss)
        return self.count
