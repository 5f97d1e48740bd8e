"""Train a tiny classifier with the Trainer; run alone or under torchrun (the DDP test's worker).

    python ddp_train.py MODEL_DIR OUT_DIR BATCH
    torchrun --nproc_per_node=2 ddp_train.py MODEL_DIR OUT_DIR BATCH
"""

import sys

import torch
from safetensors.torch import save_file

import peluk
from peluk.training import Trainer, TrainingArguments
from tests.training.test_trainer import toy_rows

model_dir, out, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(1)
tok = peluk.AutoTokenizer.from_pretrained(model_dir)
torch.manual_seed(0)
model = peluk.AutoModelForSequenceClassification.from_pretrained(model_dir, hidden_dropout_prob=0.0,
                                                                 attention_probs_dropout_prob=0.0)
args = TrainingArguments(out, learning_rate=1e-3, per_device_train_batch_size=batch, num_train_epochs=2,
                         save_strategy="no", disable_tqdm=True, report_to="none")
trainer = Trainer(model, args, train_dataset=toy_rows(tok, 32), processing_class=tok)
metrics = trainer.train()
if trainer.rank == 0:
    import os

    os.makedirs(out, exist_ok=True)
    save_file({n: p.detach().contiguous() for n, p in model.named_parameters()}, f"{out}/weights.safetensors")
    print("steps", trainer.state.global_step, "loss", metrics["train_loss"])
