"""A corpus of your own in one command: the docstrings of a tree of Python files as a jsonl
corpus, one document per module, class or function docstring (English prose about code; what
the docs' "study on your own data" example trains on, from Python's standard library).

    python examples/docstrings_jsonl.py /usr/lib/python3.11 data/stdlib_docs/docs.jsonl
    python -m lm.study --runs_dir=runs/stdlib_docs --corpus='jsonl:data/stdlib_docs/*.jsonl'
"""
import ast
import json
import os
import sys

MIN_CHARS = 200  # shorter docstrings are mostly one-line summaries


def docstrings(root: str):
    """Every docstring of at least MIN_CHARS characters under `root`, in sorted path order
    (so the corpus, and its fingerprint, is the same on every run)."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in ("test", "tests", "site-packages",
                                                      "dist-packages", "__pycache__"))
        for name in sorted(f for f in files if f.endswith(".py")):
            try:
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    tree = ast.parse(f.read())
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                     ast.AsyncFunctionDef)):
                    text = ast.get_docstring(node)
                    if text and len(text) >= MIN_CHARS:
                        yield text


def main(root: str, out: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    count = 0
    with open(out + ".tmp", "w") as f:
        for text in docstrings(root):
            f.write(json.dumps({"text": text}) + "\n")
            count += 1
    os.replace(out + ".tmp", out)
    print(f"{out}: {count} documents, {os.path.getsize(out) / 1e6:.1f} MB")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
