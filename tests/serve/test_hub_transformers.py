"""transformers' from_pretrained against the peluk hub (HF_ENDPOINT set before transformers is imported)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("transformers")

LOAD = """
import json, sys, torch, transformers as tf
name, local = sys.argv[1], sys.argv[2]
config = tf.AutoConfig.from_pretrained(name)
tokenizer = tf.AutoTokenizer.from_pretrained(name)
model = tf.AutoModel.from_pretrained(name).eval()
reference = tf.AutoModel.from_pretrained(local).eval()
batch = tokenizer(["hello world", "peluk"], return_tensors="pt", padding=True)
with torch.no_grad():
    same = torch.equal(model(**batch).last_hidden_state, reference(**batch).last_hidden_state)
tf.AutoModel.from_pretrained(name, local_files_only=True)  # the cache alone is enough afterwards
try:
    tf.AutoConfig.from_pretrained(name.replace("tiny", "missing"))
    missing = "loaded?!"
except OSError as e:
    missing = str(e)
print(json.dumps({"model_type": config.model_type, "ids": batch["input_ids"][0].tolist(),
                  "local_ids": tf.AutoTokenizer.from_pretrained(local)(["hello world"])["input_ids"][0],
                  "same": same, "missing": missing}))
"""


@pytest.mark.slow
def test_auto_classes_load_from_the_hub(server, tiny_dir, tmp_path):
    folder = tiny_dir("bert", "base")
    api, repo_id = server.api(), "admin/tiny-bert"
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(folder_path=folder, repo_id=repo_id)
    assert any(s.lfs for s in api.model_info(repo_id, files_metadata=True).siblings
               if s.rfilename.endswith(".safetensors"))
    env = {**os.environ, "HF_ENDPOINT": server.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_TOKEN", None)  # a public repository: anonymous reads
    proc = subprocess.run([sys.executable, "-c", LOAD, repo_id, str(folder)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["model_type"] == "bert" and out["same"] and out["ids"][:len(out["local_ids"])] == out["local_ids"]
    assert "is not a local folder and is not a valid model identifier" in out["missing"]
