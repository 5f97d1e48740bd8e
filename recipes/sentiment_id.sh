#!/usr/bin/env bash
# peluk/sentiment-id: all-MiniLM-L6-v2 fully fine-tuned on IndoNLU SmSA (Indonesian, negative/neutral/positive).
# Full fine-tuning (not LoRA): the base's vocabulary is English, and the embeddings need to move for
# Indonesian (a LoRA adapter reached only 0.76 macro-F1 after 2 epochs). Weights are stored in float16.
set -euo pipefail
DATA=${DATA:-../shared/data}
.venv/bin/peluk train text-classification \
  --data "$DATA/indonlu_smsa/train_preprocess.tsv" --validation "$DATA/indonlu_smsa/valid_preprocess.tsv" \
  --column-names text,label --text-column text --label-column label \
  --model sentence-transformers/all-MiniLM-L6-v2 --output peluk/assets/sentiment-id \
  --lr 8e-5 --epochs ${EPOCHS:-5} --batch-size 32 --max-length 160 --bf16 --save-dtype float16 \
  --dataset-name indonlu/smsa --language id "$@"
