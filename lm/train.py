"""Train a decoder-only LM from a config file.

    python -m lm.train --config=configs/quickstart.py --workdir=runs/quickstart \
        --config.optimizer.lr=3e-3

The workdir receives config.json (the resolved config), model.json (shape, parameter counts,
FLOPs per token), metrics.jsonl (see lm/metrics_log.py) and checkpoints/. Starting on a workdir
that has checkpoints resumes from the newest good one, bit-identically on the same machine.
SIGTERM / SIGINT finish the current step, save a checkpoint and exit 0.
"""
import functools
import json
import math
import os
import signal
import sys
import time

import jax
from absl import app, flags, logging
from ml_collections import config_flags
from tqdm import tqdm

import optim
from data.clients import FetchError
from lm import inputs
from lm.checkpoint import Checkpointer
from lm.config_checks import (ConfigError, check_config, check_override_keys, check_workdir,
                              model_record)
from lm.metrics_log import MetricsLog
from lm.model import ModelConfig, Transformer, init_params, mup_width_mult
from lm.model_info import count_pytree_params, model_info
from lm.step import TrainState, init_state, make_eval_step, make_train_step


class StopRequested:
    """Turns SIGTERM / SIGINT into a flag the loop reads between steps."""

    def __init__(self):
        self.signal_name = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signal_name = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def run(config, workdir: str) -> dict:
    """Trains (or resumes) the run in `workdir`; returns a summary dict."""
    check_config(config, jax.device_count())
    try:
        optimizer = _build_optimizer(config)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    mesh = inputs.make_mesh(config.mesh)
    try:
        data = inputs.load(config)  # prepares data on first use
    except ValueError as err:  # unknown corpus, too-short split, stale preparation
        raise ConfigError(str(err)) from err
    model_cfg = ModelConfig.from_config(config.model, data.vocab_size,
                                        config.precision.activation_dtype)
    check_workdir(workdir, model_cfg)

    os.makedirs(workdir, exist_ok=True)
    info = model_info(model_cfg, config.data.seq_len)
    _write_run_files(workdir, config, model_record(model_cfg, info))
    print(f"model: {info['params/total']:,} parameters ({info['params/non_embedding']:,} "
          f"non-embedding), {info['flops_per_token']:,} training FLOPs/token", flush=True)

    model = Transformer(model_cfg)
    replicated = inputs.replicated(mesh)
    make_state = functools.partial(_initial_state, model, optimizer.tx, config)
    abstract_state = jax.eval_shape(make_state)
    abstract_state = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), abstract_state)

    checkpointer = Checkpointer(workdir, config.train.keep_checkpoints)
    metrics_log = MetricsLog(workdir)
    restored = checkpointer.restore_latest(abstract_state)
    if restored is None:
        state = jax.jit(make_state, out_shardings=replicated)()
        start = 0
    else:
        start, state, _ = restored
        if start >= config.train.steps:
            checkpointer.close()
            print(f"the run in {workdir} is complete: its checkpoint is at step {start} and "
                  f"train.steps={config.train.steps}; raise --config.train.steps to train "
                  "further", flush=True)
            return {"step": start, "tokens": start * config.train.batch_size
                    * config.data.seq_len, "stopped": None}
        print(f"resumed from the checkpoint at step {start}", flush=True)
    metrics_log.resume_at(start)
    n_params = count_pytree_params(state.params)
    assert n_params == info["params/total"], (n_params, info["params/total"])

    train_step = jax.jit(make_train_step(model, optimizer.tx, config.train.microbatches,
                                         config.model.z_loss), donate_argnums=0)
    eval_step = jax.jit(make_eval_step(model))
    eval_params = jax.jit(optimizer.eval_params)
    tokens_per_step = config.train.batch_size * config.data.seq_len

    def save(step: int, state: TrainState) -> None:
        checkpointer.save(step, state, {"step": step, "tokens": step * tokens_per_step})

    last_row = {}
    timer = (time.perf_counter(), start)
    bar = tqdm(total=config.train.steps, initial=start, desc="train", unit="step",
               dynamic_ncols=True, mininterval=1.0, file=sys.stderr)
    with StopRequested() as stop:
        step = start
        while step < config.train.steps and stop.signal_name is None:
            windows = data.train_batch(step)
            state, metrics, layer_stats = train_step(state, inputs.to_device(windows, mesh))
            step += 1
            host = jax.device_get(metrics)  # one sync per step: a NaN is caught before saving
            _check_finite(host, step, checkpointer)
            done = step == config.train.steps
            evaluate = step % config.train.eval_every == 0 or done
            stats = config.train.layer_stats_every and step % config.train.layer_stats_every == 0
            if step % config.train.log_every == 0 or evaluate or stats:
                now = time.perf_counter()
                seconds = (now - timer[0]) / max(step - timer[1], 1)
                timer = (now, step)
                row = {"step": step, "tokens": step * tokens_per_step,
                       "flops": step * tokens_per_step * info["flops_per_token"],
                       **{k: float(v) for k, v in host.items()},
                       "train/lr": float(optimizer.schedule(step - 1)),
                       "time/step_s": seconds, "time/tokens_per_s": tokens_per_step / seconds}
                if stats:
                    row.update({k: float(v) for k, v in jax.device_get(layer_stats).items()})
                if evaluate:
                    row.update(_evaluate(eval_step, eval_params(state.opt_state, state.params),
                                         data.eval_sets, mesh))
                    timer = (time.perf_counter(), step)  # eval time is not step time
                metrics_log.write(row)
                last_row = row
                bar.set_postfix(loss=f"{row['train/loss']:.3f}",
                                tok_s=f"{row['time/tokens_per_s']:.0f}")
            if step % config.train.checkpoint_every == 0 or done:
                save(step, state)
            bar.update(1)
        bar.close()
        if stop.signal_name is not None and step not in checkpointer.steps():
            save(step, state)
        checkpointer.close()

    summary = {"step": step, "tokens": step * tokens_per_step, **last_row}
    if stop.signal_name is not None:
        print(f"stopped by {stop.signal_name} at step {step}; checkpoint saved in "
              f"{checkpointer.directory}. Rerun the same command to resume.", flush=True)
    else:
        evals = "  ".join(f"{k}={v:.4f}" for k, v in last_row.items() if k.startswith("eval/"))
        print(f"done: {step} steps, {step * tokens_per_step:,} tokens, "
              f"train/loss={last_row.get('train/loss', float('nan')):.4f}  {evals}", flush=True)
    return {**summary, "stopped": stop.signal_name}


def _check_finite(host_metrics: dict, step: int, checkpointer: Checkpointer) -> None:
    """Stops the run at the first non-finite loss or norm, before that state can be saved."""
    if all(math.isfinite(float(v)) for v in host_metrics.values()):
        return
    checkpointer.wait()
    good = checkpointer.steps()
    raise FloatingPointError(
        f"training loss {float(host_metrics['train/loss'])}, gradient norm "
        f"{float(host_metrics['train/grad_norm'])} at step {step}: not finite; stopped without "
        f"saving. The last good checkpoint ({'step ' + str(good[-1]) if good else 'none'}) is "
        f"kept in {checkpointer.directory}. Lower optimizer.lr, raise schedule.warmup_steps or "
        "set model.z_loss / model.qk_norm, then rerun with a new --workdir.")


def _evaluate(eval_step, params, eval_sets: dict, mesh) -> dict:
    """Validation loss (nats/token) and bits per byte on each set's fixed windows."""
    out = {}
    for name, eval_set in eval_sets.items():
        nats = sum(float(eval_step(params, inputs.to_device(w, mesh))) for w in eval_set.batches)
        loss = nats / eval_set.num_targets
        out[f"eval/{name}/loss"] = loss
        out[f"eval/{name}/bpb"] = loss / math.log(2) / eval_set.bytes_per_token
    return out


def _build_optimizer(config) -> optim.Optimizer:
    """The run's optimizer, checked against the model's parameter shapes before any data is
    prepared or anything compiles. Which parameters exist does not depend on the vocabulary,
    so the byte tokenizer's size stands in for it here."""
    model = Transformer(ModelConfig.from_config(config.model, 257, "float32"))
    params = jax.eval_shape(functools.partial(init_params, model, jax.random.PRNGKey(0), 1))
    return optim.build_from_config(config, params, mup_width_mult(config.model))


def _initial_state(model, tx, config) -> TrainState:
    params = init_params(model, jax.random.PRNGKey(config.train.seed), config.data.seq_len)
    return init_state(params, tx)


def _write_run_files(workdir: str, config, record: dict) -> None:
    """config.json and model.json; a resume with a changed config keeps the first config.json
    and writes the new one beside it, so what each leg of the run used stays on record."""
    resolved = json.loads(config.to_json())
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        with open(path) as f:
            if json.load(f) != resolved:
                path = os.path.join(workdir, f"config.{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as f:
        json.dump(resolved, f, indent=2)
    with open(os.path.join(workdir, "model.json"), "w") as f:
        json.dump(record, f, indent=2)


_CONFIG = config_flags.DEFINE_config_file("config", "configs/quickstart.py",
                                          "Config file (a get_config() python file).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics).")


def main(argv) -> None:
    del argv
    if not flags.FLAGS["verbosity"].present:  # absl would log INFO (orbax is chatty there)
        logging.set_verbosity(logging.WARNING)
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required, e.g. --workdir=runs/quickstart")
    try:
        run(_CONFIG.value, _WORKDIR.value)
    except (ConfigError, FileNotFoundError, FetchError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(3 if isinstance(err, FloatingPointError) else 2)


def entry_point() -> None:
    try:
        check_override_keys(sys.argv[1:])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    app.run(main)


if __name__ == "__main__":
    entry_point()
