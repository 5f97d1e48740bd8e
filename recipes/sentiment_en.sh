#!/usr/bin/env bash
# peluk/sentiment-en: all-MiniLM-L6-v2 fully fine-tuned on GLUE SST-2 (English, negative/positive).
# Weights are stored in float16 (45 MB).
set -euo pipefail
DATA=${DATA:-../shared/data}
.venv/bin/peluk train text-classification \
  --data "$DATA/sst2/train.tsv" --validation "$DATA/sst2/dev.tsv" \
  --text-column sentence --label-column label --label-names negative,positive \
  --model sentence-transformers/all-MiniLM-L6-v2 --output peluk/assets/sentiment-en \
  --lr 6e-5 --epochs ${EPOCHS:-2} --batch-size 32 --max-length 66 --bf16 --save-dtype float16 \
  --dataset-name glue/sst2 --language en "$@"
