"""Training a model: `pretrain` (a language model from token shards) and `finetune` (the judge's skill from
pair and claim records, under the losses of `objectives`), with `study` (learning curves of a fine-tuning).

Shared by both: `common` (windows, sampler, schedule, optimizer, losses, device, the saved model
directory) and `distributed` (the process group under torchrun). Pretraining alone: `pretrain_run` (its
training loop), `checkpoint` (its resumable state) and `tokens` (the token files it reads).
"""
