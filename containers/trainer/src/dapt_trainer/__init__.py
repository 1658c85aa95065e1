"""dapt_trainer: domain-adaptive pretraining and multi-task SFT for LLaMA-family models."""
