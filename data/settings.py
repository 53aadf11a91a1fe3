"""The data settings (`config.data`, and the defaults of `python -m data.prepare`): each field's
default, doc and allowed values, defined once (core/fields.py). JAX-free: data.prepare's workers
read them.
"""
from core.fields import Field, Section, nonnegative, positive


def _tokenizer_kind(d) -> str:
    kind = d["tokenizer"]
    if kind in ("byte", "bpe") or kind.startswith("hf:"):
        return ""
    return (f"data.tokenizer={kind!r} is not byte, bpe or hf:PATH (a tokenizer.json or its "
            "directory)")


DATA = Section("data", "corpora, tokenizer and token windows", dict(
    root=Field("", "prepared-data root; \"\": $OPTISCALE_DATA_DIR, else ~/.cache/optiscale"),
    corpus=Field("en_docs", "training source (when data.mixture is empty): a registered corpus "
                            "(python -m data.fetch lists them), a name from data.sources, or "
                            "jsonl:PATTERN | parquet:PATTERN | text:PATTERN | "
                            "hf:NAME[:CONFIG[:SPLIT]] (data/sources.py; PATTERN: a glob, local "
                            "or gs://)"),
    mixture=Field({}, "weighted mixture of training sources, {source: weight} (weights > 0, "
                      "normalised): each sequence of a batch comes from source i with "
                      "probability w_i / sum(w); replaces data.corpus when set. Command line: "
                      "--config.data.mixture='{\"a\": 0.7, \"b\": 0.3}'"),
    sources=Field({}, "names for sources, {name: source}, usable wherever a source is: e.g. "
                      "{\"fineweb_edu\": \"hf:HuggingFaceFW/fineweb-edu:sample-10BT\"}"),
    text_field=Field("text", "the JSON field / parquet or dataset column holding documents"),
    eval_corpora=Field(("en_docs", "code_py"), "one validation set per source"),
    tokenizer=Field("byte", "byte (UTF-8 bytes + EOS) | bpe (trained offline with `tokenizers`) "
                            "| hf:PATH (a tokenizer.json or its directory)"),
    vocab_size=nonnegative(8192, "bpe only: the vocabulary size"),
    tokenizer_corpora=Field(("en_docs", "code_py"), "bpe only: the sources the tokenizer is "
                                                     "trained on, any kind data.corpus takes "
                                                     "(their training documents only)"),
    tokenizer_sample_mb=Field(100.0, "bpe only: MiB of training documents the tokenizer is "
                                     "trained on, a sample by content hash shared equally among "
                                     "data.tokenizer_corpora (smaller sources whole)", above=0.0),
    val_fraction=Field(0.02, "fraction of documents held out for validation", minimum=0.0,
                       below=1.0),
    workers=nonnegative(0, "processes that tokenize a source on first use; 0: all cores"),
    seq_len=positive(256, "tokens per training sequence (a window holds seq_len + 1)"),
    eval_batches=positive(8, "fixed validation windows: eval_batches x eval_batch_size"),
    eval_batch_size=positive(32, "sequences per validation batch"),
), rules=(_tokenizer_kind,))
