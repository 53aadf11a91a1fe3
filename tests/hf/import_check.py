"""`python tests/hf/import_check.py HF_DIR WORKDIR DATA_ROOT FSDP`: a run started from HF_DIR
(train.init_from) on a mesh with fsdp=FSDP, as tests/hf/test_import.py runs it in a subprocess
with 8 host devices. Prints one line "RESULT <json>": whether the step-0 parameters export back
to HF_DIR's tensors bit for bit, and the max |logit difference| between optiscale and
transformers after 20 steps, exported with lm.export."""
import json
import os
import sys

import jax
import numpy as np
import torch
import transformers

from configs import base
from lm import export, sample, train
from lm.hf import load, weights
from lm.hf.architectures import architecture_of
from lm.train.build import build
from lm.train.checkpoint import Checkpointer
from lm.train.restore import restore_or_init

MODEL = dict(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64, activation="swiglu",
             tie_embeddings=False, max_seq_len=64)


def config(hf_dir: str, data_root: str, fsdp: int):
    c = base.get_config()
    c.model.update(MODEL)
    c.data.update(dict(root=data_root, corpus="en_docs_sample", eval_corpora=("en_docs_sample",),
                       seq_len=32, eval_batches=1, eval_batch_size=8))
    c.train.update(dict(steps=20, batch_size=8, eval_every=20, checkpoint_every=20,
                        log_every=10, init_from=f"hf:{hf_dir}"))
    c.mesh.update(dict(data=-1, fsdp=fsdp))
    c.schedule.warmup_steps = 5
    return c


def main(hf_dir: str, workdir: str, data_root: str, fsdp: int) -> dict:
    c = config(hf_dir, data_root, fsdp)
    run = build(c, os.path.join(workdir, "start"))
    checkpointer = Checkpointer(os.path.join(workdir, "start"), 1)
    _, state = restore_or_init(run, checkpointer, None)
    checkpointer.close()
    exported = weights.to_hf(state.params, run.model_cfg, architecture_of(run.model_cfg))
    original = load.read_tensors(hf_dir)
    round_trip = (exported.keys() == original.keys() and all(
        np.array_equal(exported[k], original[k]) for k in original))
    shards = {str(x.sharding.spec) for x in jax.tree_util.tree_leaves(state.params)}

    trained_dir = os.path.join(workdir, "trained")
    train.run(c, trained_dir)
    trained = sample.load(trained_dir)
    out = os.path.join(workdir, "exported")
    export.write_model_dir(out, trained.params, trained.model.cfg, trained.tokenizer)
    tokens = np.random.default_rng(0).integers(0, 257, (2, 32))
    ours = np.asarray(trained.model.apply({"params": trained.params}, tokens))
    with torch.no_grad():
        theirs = transformers.AutoModelForCausalLM.from_pretrained(out)(
            torch.tensor(tokens)).logits.numpy()
    return dict(round_trip=bool(round_trip), shardings=sorted(shards),
                devices=len(jax.devices()), step=trained.step,
                logit_diff=float(np.abs(ours - theirs).max()),
                logit_scale=float(np.abs(ours).max()))


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))))
