"""Real-text corpora, tokenizers and token arrays for optiscale.

    python -m data.fetch                      # lists the corpora
    python -m data.fetch en_docs              # ROOT/corpora/en_docs/{docs.jsonl,manifest.json}
    python -m data.prepare --corpus en_docs --tokenizer bpe --vocab_size 8192

Modules: `corpora` (the registry), `clients` (registry downloads), `fetch` (raw packages ->
documents), `documents` (the document file format), `samples` (the committed sample corpora),
`split` (train/validation by document), `tokenizer` (byte and BPE), `prepare` (documents ->
token arrays), `store` (TensorStore I/O), `atomic` (all-or-nothing outputs), `dataset` (opening
prepared data) and `sampling` (training and evaluation windows). ROOT is `--root`, else
$OPTISCALE_DATA_DIR, else ~/.cache/optiscale.
"""
