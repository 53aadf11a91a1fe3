"""lm-evaluation-harness on optiscale's own model (lm/train/harness.py, python -m lm.evaluate, the
train hook): what the harness reports on tasks defined by local files equals the same quantities
computed directly from the model's forward pass (log_softmax of the logits of the whole token
sequence, the multiple-choice argmax, greedy decoding by recomputation), and batched requests
score as one at a time. No network."""
import json
import math
import re

import jax
import numpy as np
import pytest
from lm_eval.api.instance import Instance

from configs import base
from data.tokenizer import ByteTokenizer
from lm import evaluate, sample, train
from lm.errors import ConfigError
from lm.model import ModelConfig, Transformer, init_params
from lm.train import harness
from lm.train.config_checks import check_config
from lm.train.metrics_log import read_metrics
from tests.model.test_sample import greedy_by_recomputation

CONTEXT = 24  # the unit tests' model.max_seq_len: long texts need several windows


def byte_model():
    """A random model over bytes, large enough weights (init_std 0.3) that its choices vary."""
    c = base.get_config()
    c.model.update(dict(d_model=32, n_layers=2, n_heads=4, max_seq_len=CONTEXT, init_std=0.3))
    model = Transformer(ModelConfig.from_config(c.model, ByteTokenizer.vocab_size, "float32"))
    return model, init_params(model, jax.random.PRNGKey(0), 8)


def token_logprobs(model, params, tokens):
    """log p(tokens[i + 1] | tokens[:i + 1]) for each i, and whether it is the argmax: one
    forward pass over the tokens, no padding or batching."""
    logits = np.asarray(model.apply({"params": params}, np.asarray([tokens[:-1]], np.int32))[0])
    logp = np.asarray(jax.nn.log_softmax(logits))
    positions = np.arange(len(tokens) - 1)
    return logp[positions, tokens[1:]], logits.argmax(-1) == np.asarray(tokens[1:])


def continuation_loglikelihood(model, params, tokenizer, context, continuation):
    """(log p(continuation | EOS + context), greedy), the continuation's tokens being those of
    the whole text past the context's, EOS + text left-truncated to the model's context."""
    whole, context_ids = tokenizer.encode_batch([context + continuation, context])
    scored = len(whole) - len(context_ids)
    whole = [tokenizer.eos_id, *whole][-(model.cfg.max_seq_len + 1):]
    logp, greedy = token_logprobs(model, params, whole)
    return float(logp[len(logp) - scored:].sum()), bool(greedy[len(logp) - scored:].all())


def rolling_loglikelihood(model, params, tokenizer, text):
    """log p(text | EOS) with every token predicted once, from up to max_seq_len tokens of
    context: windows of max_seq_len predictions, the last one given a full context."""
    tokens = tokenizer.encode_batch([text])[0]
    sequence, length, total, start = [tokenizer.eos_id, *tokens], model.cfg.max_seq_len, 0.0, 0
    while start < len(tokens):
        end = min(start + length, len(tokens))
        low = max(0, end - length)
        logp, _ = token_logprobs(model, params, sequence[low:end + 1])
        total += float(logp[start - low:].sum())
        start = end
    return total


def requests(kind, arguments):
    return [Instance(kind, {}, args, i) for i, args in enumerate(arguments)]


PAIRS = [("The cat", " sat"), ("", "Hello"), ("a", " b c"), ("x" * 40, " long context"),
         ("Numbers: 1 2 3", " 4"), ("q", ""), ("Once upon", " a time there was")]
TEXTS = ["short", "exactly twenty-four char",
         "a text longer than two windows of twenty-four bytes each, and then some", ""]


@pytest.mark.slow
def test_loglikelihood_batched_equals_one_at_a_time_and_the_direct_forward_pass():
    model, params = byte_model()
    tokenizer = ByteTokenizer()
    batched = harness.HarnessLM(model, params, tokenizer, batch_size=3)
    single = harness.HarnessLM(model, params, tokenizer, batch_size=1)
    got = batched.loglikelihood(requests("loglikelihood", PAIRS))
    assert got == single.loglikelihood(requests("loglikelihood", PAIRS))
    for (context, continuation), (logprob, greedy) in zip(PAIRS, got):
        want, want_greedy = continuation_loglikelihood(model, params, tokenizer, context,
                                                       continuation)
        assert logprob == pytest.approx(want, rel=1e-5, abs=1e-5) and greedy == want_greedy
    assert got[5] == (0.0, True)  # an empty continuation
    rolling = batched.loglikelihood_rolling(requests("loglikelihood_rolling",
                                                     [(t,) for t in TEXTS]))
    assert rolling == single.loglikelihood_rolling(requests("loglikelihood_rolling",
                                                            [(t,) for t in TEXTS]))
    for text, logprob in zip(TEXTS, rolling):
        assert logprob == pytest.approx(rolling_loglikelihood(model, params, tokenizer, text),
                                        rel=1e-5, abs=1e-5)


def test_generate_until_is_greedy_decoding_cut_at_the_stop_strings():
    model, params = byte_model()
    tokenizer = ByteTokenizer()
    arguments = [("The", {"until": ["e"], "max_gen_toks": 6}), ("A b", {"max_gen_toks": 6}),
                 ("The", {"until": "zz", "max_gen_toks": 6}), ("x" * 30, {"max_gen_toks": 100})]
    batched = harness.HarnessLM(model, params, tokenizer, batch_size=2)
    got = batched.generate_until(requests("generate_until", arguments))
    assert got == harness.HarnessLM(model, params, tokenizer, batch_size=1).generate_until(
        requests("generate_until", arguments))
    for (context, kwargs), text in zip(arguments, got):
        new = min(kwargs["max_gen_toks"], CONTEXT - 1)
        prompt = [tokenizer.eos_id, *tokenizer.encode_batch([context])[0]][-(CONTEXT - new):]
        ids = greedy_by_recomputation(model, params, np.asarray([prompt], np.int32), new)[0]
        ids = ids.tolist()
        want = tokenizer.decode(ids[:ids.index(256)] if 256 in ids else ids)
        for stop in [kwargs["until"]] if isinstance(kwargs.get("until"), str) else kwargs.get(
                "until", []):
            want = want.split(stop, 1)[0]
        assert text == want
    with pytest.raises(ConfigError, match="decodes greedily only"):
        batched.generate_until(requests("generate_until", [("a", {"do_sample": True})]))


def write_tasks(directory, documents: dict) -> None:
    """Three tasks from local jsonl files: multiple choice, generation and rolling
    log-likelihood (word perplexity)."""
    for name, rows in documents.items():
        (directory / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = "dataset_path: json\ntest_split: test\ndataset_kwargs:\n  data_files:\n    test: {}\n"
    tasks = {
        "tiny_choice": "output_type: multiple_choice\ndoc_to_text: '{{question}}'\n"
                       "doc_to_choice: '{{choices}}'\ndoc_to_target: '{{answer}}'\n"
                       "metric_list:\n  - metric: acc\n  - metric: acc_norm\n",
        "tiny_generate": "output_type: generate_until\ndoc_to_text: '{{prompt}}'\n"
                         "doc_to_target: '{{target}}'\ngeneration_kwargs:\n  until: ['.']\n"
                         "  max_gen_toks: 5\n  do_sample: false\n"
                         "metric_list:\n  - metric: exact_match\n",
        "tiny_text": "output_type: loglikelihood_rolling\ndoc_to_text: ''\n"
                     "doc_to_target: '{{text}}'\nmetric_list:\n  - metric: word_perplexity\n",
    }
    for name, body in tasks.items():
        (directory / f"{name}.yaml").write_text(
            f"task: {name}\n" + common.format(directory / f"{name}.jsonl") + body)


QUESTIONS = [dict(question=q, choices=c, answer=a) for q, c, a in [
    ("The kernel", [" module", " the", " banana"], 1), ("Install the", [" package", " of"], 0),
    ("def f(x):", [" return", "\n    return x", " pass"], 2), ("import", [" os", " numpy"], 0),
    ("To configure", [" the", " a", " it", " options"], 3)]]
PROMPTS = ["The file", "Run the", "A list of", "def ", "See the"]
TEXTS_LONG = ["The configuration file lists the options of every module in the package.",
              "def main():\n    return 0\n", "Set the environment variable before you run it."]


@pytest.mark.slow
def test_harness_on_a_trained_run_equals_the_direct_computation(tiny_config, tmp_path, capsys):
    workdir, tasks_dir = str(tmp_path / "run"), tmp_path / "tasks"
    tasks_dir.mkdir()
    write_tasks(tasks_dir, {"tiny_choice": QUESTIONS, "tiny_generate": [
        dict(prompt=p, target="") for p in PROMPTS], "tiny_text": [
        dict(text=t) for t in TEXTS_LONG]})
    # the targets of half the prompts are the model's own greedy text: exact_match 2/5 tells
    # that the harness generated exactly that text; one run of 4 steps, harness hook on
    tiny_config.train.update(dict(steps=4, checkpoint_every=4, eval_every=4, log_every=2,
                                  harness_tasks="tiny_choice,tiny_generate,tiny_text",
                                  harness_every=4, harness_include_path=str(tasks_dir),
                                  loggers="jsonl,tensorboard"))
    tiny_config.schedule.warmup_steps = 1
    train.run(tiny_config, workdir)
    trained = sample.load(workdir)
    model, params, tokenizer = trained.model, trained.params, trained.tokenizer
    hook_row = read_metrics(workdir)[-1]
    assert hook_row["step"] == 4 and "harness/tiny_choice/acc" in hook_row

    greedy = []
    for prompt in PROMPTS:
        ids = [tokenizer.eos_id, *tokenizer.encode_batch([prompt])[0]]
        new = greedy_by_recomputation(model, params, np.asarray([ids], np.int32), 5)[0].tolist()
        text = tokenizer.decode(new[:new.index(tokenizer.eos_id)] if tokenizer.eos_id in new
                                else new)
        greedy.append(text.split(".", 1)[0])
    targets = [greedy[0], greedy[1] + " not", greedy[2], "\u2603", "\u2603"]
    write_tasks(tasks_dir, {"tiny_generate": [dict(prompt=p, target=t)
                                              for p, t in zip(PROMPTS, targets)]})
    assert evaluate.main([f"--workdir={workdir}", "--tasks=tiny_choice,tiny_generate,tiny_text",
                          f"--include_path={tasks_dir}", "--batch_size=4"]) == 0
    printed = capsys.readouterr().out
    assert "|tiny_choice" in printed and "replacing the harness results of step 4" in printed
    record = json.loads((tmp_path / "run" / "eval" / "harness_step4.json").read_text())
    assert len(list((tmp_path / "run" / "tb").glob("events.*"))) == 2  # the trainer's, ours
    results = record["results"]

    correct = correct_norm = 0
    for q in QUESTIONS:
        lls = [continuation_loglikelihood(model, params, tokenizer, q["question"], " " + c)[0]
               for c in q["choices"]]
        correct += int(np.argmax(lls) == q["answer"])
        normed = [ll / len(c) for ll, c in zip(lls, q["choices"])]
        correct_norm += int(np.argmax(normed) == q["answer"])
    assert results["tiny_choice"]["acc,none"] == correct / len(QUESTIONS)
    assert results["tiny_choice"]["acc_norm,none"] == correct_norm / len(QUESTIONS)
    assert results["tiny_generate"]["exact_match,none"] == 2 / 5
    total = sum(rolling_loglikelihood(model, params, tokenizer, t) for t in TEXTS_LONG)
    words = sum(len(re.split(r"\s+", t)) for t in TEXTS_LONG)
    assert results["tiny_text"]["word_perplexity,none"] == pytest.approx(
        math.exp(-total / words), rel=1e-5)
    fields = harness.metric_fields(record)
    assert fields["harness/tiny_choice/acc"] == hook_row["harness/tiny_choice/acc"]
    assert fields["harness/tiny_text/word_perplexity"] == pytest.approx(
        hook_row["harness/tiny_text/word_perplexity"], rel=1e-6)


def test_lm_evaluate_refuses_bad_input_before_loading_the_run(tmp_path, capsys):
    assert evaluate.main([f"--workdir={tmp_path}", "--tasks=tiny", "--limit=-1"]) == 2
    assert "--limit=-1" in capsys.readouterr().err
    assert evaluate.main([f"--workdir={tmp_path}", "--tasks=tiny",
                          f"--include_path={tmp_path / 'none'}"]) == 2
    assert "is not a directory" in capsys.readouterr().err
    write_tasks(tmp_path, {"tiny_text": [dict(text="a b")]})
    assert evaluate.main([f"--workdir={tmp_path}", "--tasks=tiny_text,not_a_task",
                          f"--include_path={tmp_path}"]) == 2
    assert "['not_a_task'] are not harness tasks" in capsys.readouterr().err
    assert evaluate.main([f"--workdir={tmp_path}", "--tasks=tiny_text",
                          f"--include_path={tmp_path}"]) == 2
    assert "has no config.json" in capsys.readouterr().err


def test_the_train_hook_needs_both_tasks_and_an_interval(tiny_config):
    tiny_config.train.harness_tasks = "tiny_text"
    with pytest.raises(ConfigError, match="set both"):
        check_config(tiny_config)
    tiny_config.train.update(dict(harness_tasks="", harness_every=10))
    with pytest.raises(ConfigError, match="set both"):
        check_config(tiny_config)
