"""Real-text corpora, tokenizers and token arrays for optiscale.

    python -m data.fetch                      # lists the corpora
    python -m data.fetch en_docs              # ROOT/corpora/en_docs/{docs.jsonl,manifest.json}
    python -m data.prepare --corpus en_docs --tokenizer bpe --vocab_size 8192
    python -m data.prepare --corpus 'jsonl:/data/web/*.jsonl.gz' --tokenizer hf:PATH --workers 8

Modules: `corpora` (the registry), `clients` (registry downloads), `fetch` (raw packages ->
documents), `documents` (the document file format), `samples` (the committed sample corpora),
`sources` (every kind of source: registered, jsonl, parquet, text, hf; shards, fingerprints),
`split` (train/validation by document), `tokenizer` (byte, BPE, Hugging Face; `python -m
data.tokenizer train`), `bpe_training` (a BPE trained on a bounded sample of any sources), `prepare`
(documents -> token arrays, streaming, in parallel, resumable), `needs` (what a run's data
settings need under a data root: checked, or prepared all at once), `store` (TensorStore I/O),
`atomic` (all-or-nothing outputs and locks), `dataset` (opening prepared data), `verify`
(prepared data against its content hashes: `python -m data.verify ROOT`) and `sampling`
(training windows, mixtures, evaluation windows). ROOT is `--data_root`, else $OPTISCALE_DATA_DIR,
else ~/.cache/optiscale.
"""
from core.accelerators import cpu_unless_accelerators

cpu_unless_accelerators()  # before JAX is imported: a CPU machine runs quietly on the CPU
