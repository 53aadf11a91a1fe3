"""A run's own model as an lm-evaluation-harness language model, and a harness run of tasks on
it: downstream evaluation of optiscale's parameters as they are, with no export.

`HarnessLM` is an lm_eval TemplateLM (the harness splits each (context, continuation) into
tokens as its Hugging Face models do). Every request is a new document, as in training: EOS,
then the text.

- loglikelihood: EOS + context + continuation, left-truncated to max_seq_len + 1 tokens, scored
  in one forward pass: the continuation's summed log-probability and whether each of its tokens
  is the argmax. Requests run longest first, `batch_size` at a time, padded to a full batch and
  to a power-of-two length (16 .. max_seq_len), so jit compiles once per length bucket.
- loglikelihood_rolling: a whole text in the harness's disjoint windows of max_seq_len tokens
  (lm_eval.utils.get_rolling_token_windows), batched the same way.
- generate_until: greedy decoding with the KV cache (lm.model.decode.generate) of
  min(max_gen_toks, max_seq_len - 1) tokens after the context (left-truncated to fit), cut at the
  first `until` string or EOS. The cache holds one position for a whole batch, so prompts of the
  same length are batched together and each length compiles once.

`evaluate` runs tasks through lm_eval.simple_evaluate; `metric_fields` turns its results into
metrics-row fields harness/<task>/<metric>; `write_results` records them in
WORKDIR/eval/harness_step<N>.json. python -m lm.evaluate (lm/evaluate.py) runs them on a
checkpoint; `training_evaluator` on the live parameters of a training run (the train hook).
"""
import collections
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from lm_eval.api.model import TemplateLM
from lm_eval.utils import (
    get_rolling_token_windows,
    handle_non_serializable,
    make_disjoint_window,
)

from data.dataset import tokenizer_of
from lm.errors import ConfigError
from lm.model import Transformer, for_decoding
from lm.model.decode import generate
from lm.train import workdir as run_files

MIN_LENGTH = 16  # the shortest padded length: short requests share one compiled shape


def padded_length(length: int, max_len: int) -> int:
    """The power of two >= `length` (at least MIN_LENGTH), at most `max_len`."""
    return min(max_len, max(MIN_LENGTH, 1 << (length - 1).bit_length()))


@functools.partial(jax.jit, static_argnames=("model",))
def score(model, params, tokens, targets, mask):
    """Per row of tokens (batch, T): the summed log-probability of `targets` where `mask`, and
    whether every masked target is the model's argmax."""
    logits = model.apply({"params": params}, tokens).astype(jnp.float32)
    logp = jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], axis=-1)[..., 0]
    greedy = jnp.argmax(logits, axis=-1) == targets
    return jnp.sum(jnp.where(mask, logp, 0.0), axis=1), jnp.all(greedy | ~mask, axis=1)


class HarnessLM(TemplateLM):
    """`model` with `params` and the run's `tokenizer` (data/tokenizer.py) for the harness, run
    as decoding runs it (the einsum attention, which takes any length; no remat)."""

    def __init__(self, model, params, tokenizer, batch_size: int = 16):
        super().__init__()
        self.model, self.params, self.text_tokenizer = for_decoding(model), params, tokenizer
        self.batch_size, self.max_len = batch_size, model.cfg.max_seq_len

    @property
    def eot_token_id(self) -> int:
        return self.text_tokenizer.eos_id

    def tok_encode(self, string: str, add_special_tokens=None, **kwargs) -> list[int]:
        return self.text_tokenizer.encode_batch([string])[0]

    def _encode_pair(self, context: str, continuation: str):
        """The harness's split, after EOS: each request starts a document."""
        context_ids, continuation_ids = super()._encode_pair(context, continuation)
        return [self.eot_token_id, *context_ids], continuation_ids

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False):
        results = self._score([self._window(ctx, cont) for _, ctx, cont in requests])
        for (args, _, _), result in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood", args, result)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        windows, owners = [], []
        for i, request in enumerate(requests):
            pairs = get_rolling_token_windows(self.tok_encode(request.args[0]),
                                              self.eot_token_id, self.max_len, 1)
            for context, predicted in map(make_disjoint_window, pairs):
                windows.append(self._window(context, predicted))
                owners.append(i)
        totals = [0.0] * len(requests)
        for i, (logprob, _) in zip(owners, self._score(windows)):
            totals[i] += logprob
        for request, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        groups = collections.defaultdict(list)
        for i, request in enumerate(requests):
            context, kwargs = request.args
            until, new_tokens = self._generation_settings(kwargs)
            prompt = [self.eot_token_id, *self.tok_encode(context)][-(self.max_len - new_tokens):]
            groups[len(prompt), new_tokens].append((i, prompt, until))
        texts = [""] * len(requests)
        for (length, new_tokens), items in groups.items():
            for start in range(0, len(items), self.batch_size):
                chunk = items[start:start + self.batch_size]
                prompts = np.zeros((self.batch_size, length), np.int32)
                prompts[:len(chunk)] = [prompt for _, prompt, _ in chunk]
                out = np.asarray(generate(self.model, self.params, prompts, jax.random.PRNGKey(0),
                                          new_tokens=new_tokens))
                for row, (i, _, until) in enumerate(chunk):
                    texts[i] = self._cut(out[row].tolist(), until)
                    self.cache_hook.add_partial("generate_until", requests[i].args, texts[i])
        return texts

    def _window(self, context: list[int], continuation: list[int]) -> tuple[list[int], int]:
        """(tokens, how many of the last targets are scored): context + continuation cut to the
        model's max_seq_len inputs (plus the last target)."""
        if len(continuation) > self.max_len:
            raise ConfigError(f"a continuation of {len(continuation)} tokens does not fit the "
                              f"model's context (model.max_seq_len={self.max_len}); evaluate a "
                              "task with shorter continuations")
        return [*context, *continuation][-(self.max_len + 1):], len(continuation)

    def _score(self, windows: list[tuple[list[int], int]]) -> list[tuple[float, bool]]:
        """(summed log-probability, greedy) of each window, batched longest first."""
        results = [None] * len(windows)
        order = sorted(range(len(windows)), key=lambda i: -len(windows[i][0]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            length = padded_length(len(windows[chunk[0]][0]) - 1, self.max_len)
            tokens, targets = (np.zeros((self.batch_size, length), np.int32) for _ in range(2))
            mask = np.zeros((self.batch_size, length), bool)
            for row, i in enumerate(chunk):
                sequence, scored = windows[i]
                n = len(sequence) - 1
                tokens[row, :n], targets[row, :n] = sequence[:-1], sequence[1:]
                mask[row, n - scored:n] = True
            sums, greedy = jax.device_get(score(self.model, self.params, tokens, targets, mask))
            for row, i in enumerate(chunk):
                results[i] = (float(sums[row]), bool(greedy[row]))
        return results

    def _generation_settings(self, kwargs: dict) -> tuple[list[str], int]:
        """(stop strings, new tokens) of a request's generation kwargs; greedy only."""
        kwargs = dict(kwargs or {})
        if kwargs.get("do_sample") or float(kwargs.get("temperature") or 0.0) > 0:
            raise ConfigError(f"generation kwargs {kwargs}: HarnessLM decodes greedily only; "
                              "set do_sample: false and temperature: 0 in the task")
        until = kwargs.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        return until, max(1, min(int(kwargs.get("max_gen_toks", 256)), self.max_len - 1))

    def _cut(self, ids: list[int], until: list[str]) -> str:
        """The text of `ids` up to the first EOS, then up to the first `until` string."""
        if self.eot_token_id in ids:
            ids = ids[:ids.index(self.eot_token_id)]
        text = self.text_tokenizer.decode(ids)
        for stop in filter(None, until):
            text = text.split(stop, 1)[0]
        return text


def task_names(spec: str) -> list[str]:
    """"a, b" (a flag's or a config field's comma-separated task list) as ["a", "b"]."""
    return [name.strip() for name in spec.split(",") if name.strip()]


@functools.lru_cache(maxsize=4)
def task_manager(include_path: str = ""):
    """The harness's task index (its own tasks plus those under `include_path`); indexing
    takes seconds, so it is built once per path."""
    from lm_eval.tasks import TaskManager
    return TaskManager(include_path=include_path or None)


def check_tasks(tasks: list[str], include_path: str = "") -> None:
    """ConfigError naming the tasks the harness does not know."""
    if include_path and not os.path.isdir(include_path):
        raise ConfigError(f"include path {include_path} is not a directory; give the directory "
                          "holding the tasks' YAML files")
    known = set(task_manager(include_path).all_tasks)
    unknown = [t for t in tasks if t not in known]
    if not tasks or unknown:
        raise ConfigError(f"tasks {unknown or tasks} are not harness tasks; name tasks, groups "
                          "or tags that `lm_eval ls tasks` lists, or give the directory of "
                          "their YAML files (--include_path, train.harness_include_path)")


def evaluate(lm: HarnessLM, tasks: list[str], *, limit: int = 0, include_path: str = "",
             bootstrap_iters: int = 1000) -> dict:
    """lm_eval.simple_evaluate's results for `tasks` (`limit` documents each, 0: all)."""
    from lm_eval import simple_evaluate
    check_tasks(tasks, include_path)
    return simple_evaluate(model=lm, tasks=list(tasks), limit=limit or None,
                           task_manager=task_manager(include_path), log_samples=False,
                           bootstrap_iters=bootstrap_iters, verbosity="WARNING")


def metric_fields(results: dict) -> dict:
    """harness/<task>/<metric> (…/<metric>/<filter> for a filter other than "none") -> value,
    for every numeric metric and standard error of every task and group."""
    fields = {}
    for task, metrics in {**results["results"], **results.get("groups", {})}.items():
        for key, value in metrics.items():
            metric, _, filter_name = key.partition(",")
            if not filter_name or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            suffix = "" if filter_name == "none" else f"/{filter_name}"
            fields[f"harness/{task}/{metric}{suffix}"] = float(value)
    return fields


def training_evaluator(run):
    """`evaluate_tasks(params, step)` for the train hook (lm.train.hooks.harness) of `run`
    (lm.train.build.Run): the run's train.harness_* tasks on `params` as they are on the run's
    mesh; process 0 writes the json file, and the hook's fields go into the run's rows."""
    t = run.config.train
    model, tasks = Transformer(run.model_cfg), task_names(t.harness_tasks)
    tokenizer = tokenizer_of(next(iter(run.data.inputs.values()))["path"])

    def evaluate_tasks(params, step: int) -> dict:
        results = evaluate(HarnessLM(model, params, tokenizer), tasks, limit=t.harness_limit,
                           include_path=t.harness_include_path)
        if run.primary:
            write_results(run.workdir, step, results)
        return metric_fields(results)
    return evaluate_tasks


def results_path(workdir: str, step: int) -> str:
    return os.path.join(workdir, run_files.HARNESS, f"harness_step{step}.json")


def write_results(workdir: str, step: int, results: dict) -> str:
    """WORKDIR/eval/harness_step<N>.json, written whole (a rerun at the same step replaces it,
    and says so); returns its path."""
    path = results_path(workdir, step)
    if run_files.exists(path):
        print(f"replacing the harness results of step {step} in {path}", flush=True)
    record = {"step": step, **{k: v for k, v in results.items() if k != "samples"}}
    run_files.write_text(path, json.dumps(record, indent=2, default=handle_non_serializable))
    return path
