#!/usr/bin/env bash
# peluk/sentiment-id: all-MiniLM-L6-v2 + LoRA fine-tuned on IndoNLU SmSA (Indonesian, negative/neutral/positive).
set -euo pipefail
DATA=${DATA:-../shared/data}
.venv/bin/peluk train text-classification \
  --data "$DATA/indonlu_smsa/train_preprocess.tsv" --validation "$DATA/indonlu_smsa/valid_preprocess.tsv" \
  --column-names text,label --text-column text --label-column label \
  --model sentence-transformers/all-MiniLM-L6-v2 --output peluk/assets/sentiment-id \
  --lora --lora-r 16 --lr 5e-4 --epochs ${EPOCHS:-4} --batch-size 32 --max-length 128 --bf16 \
  --dataset-name indonlu/smsa --language id "$@"
