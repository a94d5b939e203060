"""A small GPT in the manner of minGPT: model, sampling and trainer, free of any music code."""
from .model import GPT, GPTConfig, KVCacheDecoder
from .trainer import Trainer, TrainerConfig

__all__ = ["GPT", "GPTConfig", "KVCacheDecoder", "Trainer", "TrainerConfig"]
