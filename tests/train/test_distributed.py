"""Both trainers on two CPU processes (gloo), started with the environment torchrun gives its
workers: the ranks end with the same weights and codebook, the loss is a single process's with the
same global batch, and checkpoints resume across numbers of processes.
"""
import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bachsformer.train import transformer as transformer_training, vae as vae_training
from bachsformer.train.config import ConfigError, build_config
from bachsformer.train.distributed import World, joined
from bachsformer.checkpoints import load_checkpoint
from conftest import TINY_GPT, TINY_VAE

pytestmark = [pytest.mark.slow,  # processes and torchrun: `.ci/run` runs them
              pytest.mark.skipif(not dist.is_available() or sys.platform != "linux",
                                 reason="needs torch.distributed (gloo) and fork")]

WORLD = 2
# Two ranks see the same global batches as one process (same frames or windows, same
# transpositions) and average their gradients, so the runs differ only by float rounding in the
# order of sums: the mean training loss of every evaluation agrees within this (absolute, in nats
# for the VQ-VAE and bits for the transformer; the measured differences are below 1e-7).
LOSS_TOLERANCE = 1e-5
ROOT = Path(__file__).resolve().parents[2]


def _quiet(*_):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_torchrun_worker(rank: int, port: int, target, args) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # a forked child must not reuse the parent's OpenMP pool
    target(rank, *args)


def launch(target, *args) -> None:
    """`target(rank, *args)` in WORLD forked processes, each with the environment torchrun sets."""
    # fork, as DataLoader workers do, so the children need not import torch again
    mp.start_processes(_as_torchrun_worker, args=(_free_port(), target, args), nprocs=WORLD, start_method="fork")


def train_on_one(train, config, resume: bool = False, stop_at: int = 0) -> tuple:
    """Train in this process, stopping after step `stop_at` if given: (its trainer, metrics or None)."""
    seen = []

    def on_step(trainer):
        seen[:] = [trainer]
        if trainer.step == stop_at:
            raise KeyboardInterrupt

    try:
        row = train(config, resume=resume, log=_quiet, progress=False, on_step=on_step)
    except KeyboardInterrupt:
        row = None
    return seen[0], row


def _train_and_keep(rank: int, train, config, folder: Path, resume: bool, stop_at: int) -> None:
    """One rank's part: keep its weights (the bare module's) and metrics for the test to compare."""
    trainer, row = train_on_one(train, config, resume, stop_at)
    assert isinstance(trainer.model, torch.nn.parallel.DistributedDataParallel)
    torch.save({"model": trainer.model.module.state_dict(), "row": row}, folder / f"rank{rank}.pt")


def train_on_two(train, config, resume: bool = False, stop_at: int = 0) -> list:
    """Each rank's final weights and returned metrics."""
    folder = Path(config.train.out_dir).parent
    launch(_train_and_keep, train, config, folder, resume, stop_at)
    return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _vae_config(corpus, out_dir, *extra):
    return build_config(vae_training.VAERecipe, overrides=[
        f"--data.midi_dir={corpus}", "--data.held_out=[p3]", f"--data.cache_dir={out_dir.parent / 'cache'}",
        f"--train.out_dir={out_dir}", "--train.epochs=2", "--train.eval_every=1", "--train.batch_size=16",
        "--train.warmup_steps=2", "--train.monitor_pieces=2", "--train.threads=1", *TINY_VAE, *extra])


def _gpt_config(corpus, vae, out_dir, *extra):
    return build_config(transformer_training.TransformerRecipe, overrides=[
        f"--data.midi_dir={corpus}", f"--data.vae={vae}", "--data.held_out=[p3]",
        f"--data.cache_dir={out_dir.parent / 'cache'}", f"--train.out_dir={out_dir}", "--train.max_steps=6",
        "--train.eval_every=3", "--train.batch_size=8", "--train.warmup_steps=2", "--train.threads=1",
        "--train.monitor_pieces=2", *TINY_GPT, *extra])


def _metrics(run_dir: Path) -> list:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def assert_losses_match(a: Path, b: Path, column: str) -> float:
    """The two runs' metrics rows, evaluation by evaluation; returns the largest loss difference."""
    rows_a, rows_b = _metrics(a), _metrics(b)
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
    worst = max(abs(float(x[column]) - float(y[column])) for x, y in zip(rows_a, rows_b))
    assert worst <= LOSS_TOLERANCE, f"{column} differs by {worst:.2e}"
    return worst


def test_vae_ranks_hold_the_same_weights_and_codebook(tiny_corpus, tmp_path):
    """With dead-code restarts and transpositions on: the codebook is all-reduced, not broadcast."""
    ranks = train_on_two(vae_training.train_vae, _vae_config(tiny_corpus, tmp_path / "run"))
    assert_same_weights(ranks[0]["model"], ranks[1]["model"])
    assert {"quantizer.codebook", "quantizer.cluster_size", "quantizer.embed_sum"} <= ranks[0]["model"].keys()
    assert ranks[0]["row"] == {**ranks[1]["row"], "elapsed_s": ranks[0]["row"]["elapsed_s"],
                               "samples_per_s": ranks[0]["row"]["samples_per_s"]}
    saved = load_checkpoint(tmp_path / "run" / "last.pt", "vae")
    assert_same_weights(saved["model"], ranks[0]["model"])  # the bare module: no `module.` prefix
    assert len(saved["rank_rngs"]) == WORLD
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "best.pt", "config.yaml", "last.pt", "metrics.csv", "metrics.png"]


@pytest.fixture(scope="module")
def vae_runs(tiny_corpus, tmp_path_factory) -> dict:
    """One run on one process and the same on two, dead-code restarts off (they pick their new
    codes from rank 0's share of the batch, where one process picks from the whole batch)."""
    folder = tmp_path_factory.mktemp("vae-runs")
    runs = {"one": folder / "one" / "run", "two": folder / "two" / "run"}
    vae_training.train_vae(_vae_config(tiny_corpus, runs["one"], "--model.dead_code_threshold=0"),
                           log=_quiet, progress=False)
    runs["ranks"] = train_on_two(vae_training.train_vae,
                                 _vae_config(tiny_corpus, runs["two"], "--model.dead_code_threshold=0"))
    return runs


def test_vae_loss_matches_one_process_with_the_same_global_batch(vae_runs):
    assert_same_weights(vae_runs["ranks"][0]["model"], vae_runs["ranks"][1]["model"])
    assert_losses_match(vae_runs["one"], vae_runs["two"], "train_loss")
    one, two = load_checkpoint(vae_runs["one"] / "last.pt"), load_checkpoint(vae_runs["two"] / "last.pt")
    assert one["step"] == two["step"]
    for key in one["model"]:
        torch.testing.assert_close(one["model"][key], two["model"][key], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("first, then", [("one", "two"), ("two", "one")])
def test_vae_resumes_on_another_number_of_processes(tiny_corpus, tmp_path, vae_runs, first, then):
    """Interrupted in the second epoch on one (two) processes, resumed on two (one): the run
    continues as the straight one-process run, within the loss tolerance."""
    config = _vae_config(tiny_corpus, tmp_path / "run", "--model.dead_code_threshold=0")
    steps_per_epoch = load_checkpoint(vae_runs["one"] / "last.pt")["step"] // 2
    for resume, processes in ((False, first), (True, then)):
        stop_at = 0 if resume else steps_per_epoch + 1
        if processes == "two":
            train_on_two(vae_training.train_vae, config, resume=resume, stop_at=stop_at)
        else:
            train_on_one(vae_training.train_vae, config, resume, stop_at)
    assert [int(r["epoch"]) for r in _metrics(tmp_path / "run")] == [1, 2]
    assert_losses_match(vae_runs["one"], tmp_path / "run", "train_loss")


def test_transformer_ranks_agree_and_loss_matches_one_process(tiny_corpus, tiny_vae, tmp_path):
    """Dropout off: with it each rank draws its own masks, which one process cannot reproduce."""
    one, two = tmp_path / "one" / "run", tmp_path / "two" / "run"
    transformer_training.train_transformer(_gpt_config(tiny_corpus, tiny_vae, one, "--model.dropout=0"),
                                           log=_quiet, progress=False)
    ranks = train_on_two(transformer_training.train_transformer,
                         _gpt_config(tiny_corpus, tiny_vae, two, "--model.dropout=0"))
    assert_same_weights(ranks[0]["model"], ranks[1]["model"])
    assert ranks[0]["row"]["val_bits"] == ranks[1]["row"]["val_bits"]
    assert_losses_match(one, two, "train_bits")
    assert_losses_match(one, two, "val_bits")
    a, b = load_checkpoint(one / "last.pt"), load_checkpoint(two / "last.pt")
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-4, atol=1e-5)


def test_a_distributed_transformer_run_resumes_exactly(tiny_corpus, tiny_vae, tmp_path):
    """With dropout on, each rank's random stream is saved and given back to it."""
    straight = train_on_two(transformer_training.train_transformer,
                            _gpt_config(tiny_corpus, tiny_vae, tmp_path / "straight" / "run"))
    config = _gpt_config(tiny_corpus, tiny_vae, tmp_path / "interrupted" / "run")
    train_on_two(transformer_training.train_transformer, config, stop_at=4)
    resumed = train_on_two(transformer_training.train_transformer, config, resume=True)
    for rank in range(WORLD):
        assert_same_weights(straight[rank]["model"], resumed[rank]["model"])
    assert [int(r["step"]) for r in _metrics(tmp_path / "interrupted" / "run")] == [3, 6]


def _use_world(rank: int, folder: Path) -> None:
    with joined("cpu") as world:
        result = {"rank": world.rank, "size": world.size, "sum": world.sum([rank, 1.5]),
                  "map": world.map(lambda x: (x * x, world.rank), list(range(5)))}
    torch.save(result, folder / f"world{rank}.pt")


def test_the_world_joins_from_the_environment_and_maps_in_order(tmp_path):
    launch(_use_world, tmp_path)
    for rank in range(WORLD):
        result = torch.load(tmp_path / f"world{rank}.pt", weights_only=False)
        assert (result["rank"], result["size"]) == (rank, WORLD)
        assert result["sum"] == [1.0, 3.0]
        assert result["map"] == [(0, 0), (1, 1), (4, 0), (9, 1), (16, 0)]  # item i done by rank i % 2


def test_the_global_batch_must_split_evenly_over_the_processes():
    assert World(torch.device("cpu"), rank=1, size=4).share(64) == 16
    with pytest.raises(ConfigError, match="batch_size=10 is the global batch"):
        World(torch.device("cpu"), rank=0, size=4).share(10)


def test_the_training_scripts_run_under_torchrun(tiny_corpus, tiny_vae, tmp_path):
    """The command line, unchanged, under the real launcher; only rank 0 writes the run folder."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
               str(ROOT / "train_transformer.py"), "--vae", str(tiny_vae), "--midi-dir", str(tiny_corpus),
               "--device", "cpu", "--no-progress", f"--train.out_dir={out}", "--train.max_steps=2",
               "--train.eval_every=2", "--train.batch_size=8", "--train.threads=1", "--data.held_out=[p3]",
               f"--data.cache_dir={tmp_path / 'cache'}", *TINY_GPT]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert load_checkpoint(out / "last.pt", "transformer")["step"] == 2
    assert [int(r["step"]) for r in _metrics(out)] == [2]
    assert done.stdout.count("step 2:") == 1, "one rank reports"
