"""Trainer placeholder: the train_transformer stage is not written yet."""
import sys

if __name__ == "__main__":
    print("train_transformer.py: not written yet; see the project's issues", file=sys.stderr)
    sys.exit(2)
