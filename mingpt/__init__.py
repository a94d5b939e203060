"""A small GPT in the manner of minGPT: model, sampling and trainer, free of any music code."""
