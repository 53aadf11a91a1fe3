"""Learning-rate schedules: a linear warmup from 0 to the peak, then one of SCHEDULES.

All are built from optax's schedule primitives. Step `s` is the number of updates already
applied, so update `s` uses `schedule(s)`; the decaying schedules reach their final value
`final_lr_fraction * peak` at `s = total_steps`.

    cosine    cosine decay to the final value (Loshchilov & Hutter 2017, SGDR).
    linear    linear decay to the final value.
    constant  the peak after warmup (final_lr_fraction unused).
    wsd       warmup-stable-decay: the peak until the last decay_fraction * total_steps steps,
              then linear decay to the final value (Hu et al. 2024, MiniCPM; Hägele et al.
              2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Training
              Durations"). Both papers decay to 0: set final_lr_fraction=0 for that.
"""
import optax

from optim.settings import SCHEDULE


def scaled_learning_rate(learning_rate: optax.ScalarOrSchedule,
                         factor: float) -> optax.ScalarOrSchedule:
    """`factor` times `learning_rate` (a float, or a schedule of the update count): the lr of
    an optimizer's second part, e.g. the AdamW that runs beside a matrix optimizer."""
    if callable(learning_rate):
        return lambda count: factor * learning_rate(count)
    return factor * learning_rate


def make_schedule(schedule_cfg, peak_lr: float, total_steps: int) -> optax.Schedule:
    """Step -> learning rate, from `schedule_cfg` (name, warmup_steps or warmup_fraction,
    final_lr_fraction, decay_fraction), the peak learning rate and the run's total step count."""
    _check(schedule_cfg, peak_lr, total_steps)
    warmup = warmup_steps(schedule_cfg, total_steps)
    after_warmup = total_steps - warmup
    end_lr = schedule_cfg.final_lr_fraction * peak_lr
    name = schedule_cfg.name
    if name == "cosine":
        rest = optax.cosine_decay_schedule(peak_lr, after_warmup,
                                           alpha=schedule_cfg.final_lr_fraction)
    elif name == "linear":
        rest = optax.linear_schedule(peak_lr, end_lr, after_warmup)
    elif name == "wsd":
        decay = _wsd_decay_steps(schedule_cfg.decay_fraction, total_steps)
        rest = optax.linear_schedule(peak_lr, end_lr, decay,
                                     transition_begin=after_warmup - decay)
    else:
        rest = optax.constant_schedule(peak_lr)
    return optax.join_schedules([optax.linear_schedule(0.0, peak_lr, warmup), rest], [warmup])


def warmup_steps(schedule_cfg, total_steps: int) -> int:
    """schedule.warmup_fraction x total_steps (rounded, at least 1) when the fraction is set,
    else schedule.warmup_steps: a fraction keeps the schedule's shape when a sweep changes the
    run length (the study tunes warmup as a fraction, as Wen et al. 2025 do)."""
    fraction = schedule_cfg.get("warmup_fraction", 0.0)
    return max(1, round(fraction * total_steps)) if fraction else schedule_cfg.warmup_steps


def _wsd_decay_steps(decay_fraction: float, total_steps: int) -> int:
    """Length of the wsd final decay: decay_fraction * total_steps, rounded to a step."""
    return round(decay_fraction * total_steps)


def _check(schedule_cfg, peak_lr: float, total_steps: int) -> None:
    """The section's own fields against their definitions (optim/settings.py), then what the
    schedule needs of the run: steps, a positive peak, a warmup that ends before the run."""
    c = schedule_cfg
    SCHEDULE.check(c)
    if not total_steps > 0:
        raise ValueError(f"train.steps={total_steps} must be positive")
    if not peak_lr > 0:
        raise ValueError(f"optimizer.lr={peak_lr} (the peak learning rate) must be positive")
    warmup = warmup_steps(c, total_steps)
    if not 0 <= warmup < total_steps:
        raise ValueError(f"schedule.warmup_steps={warmup} must be in [0, train.steps="
                         f"{total_steps}) so that the peak learning rate is reached; lower "
                         "schedule.warmup_steps or raise train.steps")
    if c.name == "wsd":
        decay = _wsd_decay_steps(c.decay_fraction, total_steps)
        if warmup + decay > total_steps:
            raise ValueError(
                f"schedule.warmup_steps={warmup} plus the wsd decay ({decay} steps = "
                f"schedule.decay_fraction={c.decay_fraction} x train.steps={total_steps}) "
                "exceed train.steps; lower schedule.warmup_steps or schedule.decay_fraction")
