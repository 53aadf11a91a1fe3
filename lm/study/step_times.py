"""Step-time ratios measured in isolation: each optimizer's train step at the study's tuned
settings timed one after another in this process, after all training has ended, as
benchmarks/optimizers.py times them (two runs sharing the cores would time each other)."""
from lm.train.build import planned_vocab_size
from lm.train.timing import build, random_windows, time_steps

STEPS, REPEATS = 10, 3


def step_seconds(config) -> float:
    """Median seconds per train step of `config`'s model and optimizer on random tokens."""
    vocab = planned_vocab_size(config)
    rt, state, _ = build(config, config.data.seq_len, vocab)
    windows = random_windows(rt, config.train.batch_size, config.data.seq_len, vocab)
    time_steps(rt, state, windows, 2, 1)  # compile and warm up; the state is donated
    return time_steps(rt, rt.init_state(), windows, STEPS, REPEATS)


def step_time_ratios(configs: dict, baseline: str) -> dict:
    """name -> (seconds per step, ratio to `baseline`'s) for {name: run config}; the baseline
    is timed first and again last, and its two times' ratio is reported as the noise."""
    seconds = {name: step_seconds(config) for name, config in configs.items()}
    again = step_seconds(configs[baseline])
    ratios = {name: (s, s / seconds[baseline]) for name, s in seconds.items()}
    ratios[f"{baseline} (again)"] = (again, again / seconds[baseline])
    return ratios
