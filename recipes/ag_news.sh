#!/usr/bin/env bash
# AG News topic classification (the tutorials' example): all-MiniLM-L6-v2 fine-tuned on the 29k real
# training rows in ../shared/data/ag_news, evaluated on the complete 7,600-row test set.
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-/tmp/peluk-ag-news}
.venv/bin/peluk train text-classification \
  --data "$DATA/ag_news/train_union_subset.csv" --validation "$DATA/ag_news/test.csv" \
  --column-names label,title,description --text-column title --text-pair-column description \
  --label-column label --label-names World,Sports,Business,Sci/Tech \
  --model sentence-transformers/all-MiniLM-L6-v2 --output "$OUT" \
  --lr 8e-5 --epochs ${EPOCHS:-1} --batch-size 32 --max-length 128 --bf16 \
  --dataset-name ag_news --language en "$@"
