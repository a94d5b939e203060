"""Generation from a trained pair: the API, the command line, prompts, determinism, bad input."""
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bachsformer.generation import Bachsformer
from bachsformer.tonality import NO_KEY, local_keys
from conftest import write_midi
from ludovico_vae.frames import score_to_piece
from ludovico_vae.midi import read_midi

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import generate  # noqa: E402


def _bytes(midi) -> bytes:
    buffer = io.BytesIO()
    midi.write(buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def model(tiny_pair):
    torch.set_num_threads(1)
    return Bachsformer.from_checkpoints(tiny_pair, "cpu")


@pytest.mark.parametrize("meter, frames", [((3, 4), 6), ((4, 4), 8), ((6, 8), 6), ((3, 8), 3)])
def test_a_piece_has_the_bars_and_meter_asked_for(model, meter, frames):
    piece = model.generate(bars=2, seed=1, meter=meter, bpm=90)[0]
    assert piece.frames.shape == (frames, 2, 88, 24) and piece.prompt_frames == 0
    assert len(piece.tokens) == frames * 16
    signature = piece.midi.time_signature_changes[0]
    assert (signature.numerator, signature.denominator) == meter
    assert piece.midi.get_tempo_changes()[1][0] == pytest.approx(90, rel=1e-4)


def test_the_same_seed_gives_the_same_midi_and_another_seed_another(model):
    a, b = (model.generate(bars=4, seed=3, temperature=1.5)[0] for _ in range(2))
    c = model.generate(bars=4, seed=4, temperature=1.5)[0]
    assert _bytes(a.midi) == _bytes(b.midi)
    assert not np.array_equal(a.tokens, c.tokens)


def test_the_whole_distribution_is_the_default(model):
    default, nucleus, narrow = (model.generate(bars=4, seed=3, **kw)[0].tokens
                                for kw in ({}, dict(top_p=1.0), dict(top_p=0.3)))
    assert np.array_equal(default, nucleus)
    assert not np.array_equal(default, narrow)  # top_p matters, so the equality above says something


def test_the_command_leaves_top_p_to_the_api_unless_given(tiny_pair, tmp_path, monkeypatch):
    seen = []
    original = Bachsformer.generate

    def recording(self, **kwargs):
        seen.append(kwargs.get("top_p", "api default"))
        return original(self, **kwargs)

    monkeypatch.setattr(Bachsformer, "generate", recording)
    base = ["--checkpoint-dir", str(tiny_pair), "--bars", "2", "--device", "cpu"]
    assert generate.main(base + ["--out", str(tmp_path / "a.mid")]) == 0
    assert generate.main(base + ["--out", str(tmp_path / "b.mid"), "--top-p", "0.3"]) == 0
    assert seen == ["api default", 0.3]


def test_a_batch_is_the_pieces_one_by_one_in_shape(model):
    pieces = model.generate(bars=2, seed=0, num_samples=3, top_k=4, top_p=0.9)
    assert len(pieces) == 3 and all(p.frames.shape == pieces[0].frames.shape for p in pieces)


def test_a_long_piece_slides_past_the_context(model):
    context_frames = model.transformer.config.block_size // 16
    piece = model.generate(bars=3 * context_frames, seed=0, meter=(1, 4))[0]
    assert len(piece.frames) == 3 * context_frames


def test_a_continuation_keeps_the_prompt_exactly_and_has_no_seam(model, tmp_path):
    notes = [(60 + i % 5, i * 0.5, i * 0.5 + 0.5) for i in range(16)] + [(48, 7.0, 9.5)]  # one note crosses bar 2
    prompt = score_to_piece(read_midi(write_midi(tmp_path / "p.mid", notes)), model.grid)
    piece = model.generate(bars=2, seed=0, prompt=prompt)[0]
    assert piece.prompt_frames == len(prompt) == 10
    np.testing.assert_array_equal(piece.frames[:len(prompt)], prompt.frames)
    assert len(piece.frames) == len(prompt) + 8  # 2 bars of 4/4 follow, no frame dropped or repeated
    trimmed = model.generate(bars=1, seed=0, prompt=prompt, prompt_bars=1)[0]
    np.testing.assert_array_equal(trimmed.frames[:4], prompt.frames[-4:])
    assert len(trimmed.frames) == 4 + 4
    assert trimmed.midi.instruments[0].notes[0].start < 60 / 120 * 4  # no silence left where bars were cut


def _input_seen(model, monkeypatch, name: str, **options) -> np.ndarray:
    """Extra input `name` of each frame the transformer is asked to write, (samples, frames), read
    off the extras it is handed (prompt frames first)."""
    from bachsformer.tokens import EXTRA_INPUTS

    seen = {}

    def fake_generate(idx, max_new_tokens, extras=None, **_):
        seen["extras"] = extras[:, ::16, list(EXTRA_INPUTS).index(name)].numpy()  # one value per frame
        return torch.cat([idx, torch.zeros(idx.shape[0], max_new_tokens, dtype=idx.dtype)], dim=1)

    monkeypatch.setattr(model, "extra_inputs", [*EXTRA_INPUTS])
    monkeypatch.setattr(model.transformer, "generate", fake_generate)
    model.generate(**{"form": "through", **options})
    return seen["extras"]


def _prompt(tmp_path, grid, pitches=(60, 62, 64, 65, 67)):
    notes = [(pitches[i % len(pitches)], i * 0.5, i * 0.5 + 0.5) for i in range(16)]
    return score_to_piece(read_midi(write_midi(tmp_path / "p.mid", notes)), grid)  # 8 frames


def test_progress_runs_through_the_piece_written(model, monkeypatch, tmp_path):
    progress = _input_seen(model, monkeypatch, "progress", bars=8, meter=(4, 4))[0]  # 32 frames after a silent one
    assert progress.tolist() == [0] + np.repeat(np.arange(16), 2).tolist()
    prompt = _prompt(tmp_path, model.grid)
    progress = _input_seen(model, monkeypatch, "progress", bars=6, meter=(4, 4), prompt=prompt)[0]  # 8 + 24 frames
    context = model.transformer.config.block_size // 16
    assert progress.tolist() == np.repeat(np.arange(16), 2)[8 - context:].tolist()


G, D, E_MINOR = 7, 2, 12 + 4  # indices into music_stats.SCALES
PLANS = [{"name": "waltz", "meter": [3, 4], "keys": [D] * 6},
         {"name": "home", "meter": [4, 4], "keys": [G] * 4 + [E_MINOR] * 2 + [NO_KEY] * 2}]


def test_a_piece_follows_a_key_plan_of_its_meter(model, monkeypatch):
    monkeypatch.setattr(model, "key_plans", PLANS)
    keys = _input_seen(model, monkeypatch, "local_key", bars=4, meter=(4, 4), num_samples=3)  # 16 frames
    home = [G] + [G] * 8 + [E_MINOR] * 4 + [NO_KEY] * 4  # the silent lead-in first, then the plan stretched
    assert keys.tolist() == [home] * 3
    pieces = model.generate(bars=1, meter=(3, 4), num_samples=2, form="through")
    assert [p.key_plan for p in pieces] == ["waltz", "waltz"]
    keys = _input_seen(model, monkeypatch, "local_key", bars=4, meter=(4, 4), key_plan="waltz")
    assert keys.tolist() == [[D] * 17]  # a plan named is followed whatever its meter
    with pytest.raises(ValueError, match="no key plan named 'aria'"):
        model.generate(bars=1, key_plan="aria", form="through")


def test_a_continuation_keeps_its_prompts_keys_and_moves_the_plan_home(model, monkeypatch, tmp_path):
    monkeypatch.setattr(model, "key_plans", PLANS[1:])
    prompt = _prompt(tmp_path, model.grid, pitches=(62, 64, 66, 67, 69, 71, 73))  # D major, 8 frames
    assert local_keys(prompt.frames).tolist() == [D] * 8
    keys = _input_seen(model, monkeypatch, "local_key", bars=2, meter=(4, 4), prompt=prompt)[0]
    B_MINOR = 12 + 11  # E minor moved as G moves to D
    expected = [D] * 8 + [B_MINOR] * 4 + [NO_KEY] * 4  # the plan stretched over 8 + 8 frames
    assert keys.tolist() == expected[-len(keys):]  # the frames the transformer sees


def test_a_model_without_local_keys_is_told_none(model, monkeypatch):
    monkeypatch.setattr(model, "key_plans", PLANS)
    assert "local_key" not in model.extra_inputs
    assert all(p.key_plan is None for p in model.generate(bars=1, num_samples=2))


def _guidance_seen(model, monkeypatch, **options) -> dict:
    """The keyword arguments the transformer's generate receives."""
    seen = {}

    def fake_generate(idx, max_new_tokens, **kwargs):
        seen.update(kwargs)
        return torch.cat([idx, torch.zeros(idx.shape[0], max_new_tokens, dtype=idx.dtype)], dim=1)

    monkeypatch.setattr(model.transformer, "generate", fake_generate)
    model.generate(bars=1, **options)
    return seen


def test_key_guidance_contrasts_the_key_a_whole_tone_either_side(model, monkeypatch, tmp_path):
    from bachsformer.generation import DEFAULT_KEY_GUIDANCE

    seen = _guidance_seen(model, monkeypatch, num_samples=2)
    key = model.extra_inputs.index("key")
    assert seen["guidance"] == DEFAULT_KEY_GUIDANCE > 0
    extras, contrasts = seen["extras"], seen["contrast_extras"]
    assert contrasts.shape == (2, *extras.shape)
    assert (contrasts[0, ..., key] == 2).all() and (contrasts[1, ..., key] == 10).all() and (extras[..., key] == 0).all()
    others = [i for i in range(extras.shape[-1]) if i != key]
    assert torch.equal(contrasts[..., others], extras[None, ..., others].expand(2, -1, -1, -1))
    assert "guidance" not in _guidance_seen(model, monkeypatch, key_guidance=0)
    prompt = _prompt(tmp_path, model.grid)  # may be in any key: unguided unless asked
    assert "guidance" not in _guidance_seen(model, monkeypatch, prompt=prompt)
    assert _guidance_seen(model, monkeypatch, prompt=prompt, key_guidance=0.5)["guidance"] == 0.5
    monkeypatch.setattr(model, "unkeyed", True)  # trained with key dropout: the contrast is "no key"
    contrasts = _guidance_seen(model, monkeypatch)["contrast_extras"]
    assert contrasts.shape[0] == 1 and (contrasts[0, ..., key] == 12).all()
    monkeypatch.setattr(model, "extra_inputs", ["frame_index", "beat"])  # no key input: nothing to guide
    assert "guidance" not in _guidance_seen(model, monkeypatch)


def test_key_guidance_of_a_planning_model_moves_the_pieces_key_and_keeps_its_mode(plan_model, monkeypatch):
    from bachsformer.tokens import PIECE_KEYS
    from bachsformer.tonality import parse_key
    column = plan_model.extra_inputs.index("piece_key")
    assert "guidance" not in _guidance_seen(plan_model, monkeypatch, form="through"), "guided when asked"
    for asked, up, down in [("D minor", "E minor", "C minor"), ("B major", "C# major", "A major")]:
        seen = _guidance_seen(plan_model, monkeypatch, key=parse_key(asked), form="through", key_guidance=0.7)
        extras, contrasts = seen["extras"], seen["contrast_extras"]
        assert (extras[..., column] == parse_key(asked)).all()
        assert (contrasts[0, ..., column] == parse_key(up)).all() and (contrasts[1, ..., column] == parse_key(down)).all()
        others = [i for i in range(extras.shape[-1]) if i != column]
        assert torch.equal(contrasts[..., others], extras[None, ..., others].expand(2, -1, -1, -1))
    from bachsformer.generation import _with_piece_keys
    unknown = torch.full((1, 3, len(plan_model.extra_inputs)), PIECE_KEYS)
    assert (_with_piece_keys(unknown, column)[..., column] == PIECE_KEYS).all(), "no key stays no key"
    # trained with key dropout: contrasted with "no key"
    monkeypatch.setattr(plan_model, "unkeyed", True)
    contrasts = _guidance_seen(plan_model, monkeypatch, form="through", key_guidance=0.5)["contrast_extras"]
    assert contrasts.shape[0] == 1 and (contrasts[0, ..., column] == PIECE_KEYS).all()


def test_key_guidance_needs_a_key_input(tiny_corpus, tiny_vae, tmp_path, capsys):
    from conftest import _tiny_pair
    plain = _tiny_pair(tmp_path / "plain", tiny_corpus, tiny_vae, "--data.extra_inputs=[frame_index, beat]")
    assert generate.main(["--checkpoint-dir", str(plain), "--bars", "1", "--seed", "0", "--key-guidance", "0.5",
                          "--out", str(tmp_path / "out")]) == 2
    assert "--key-guidance needs a model with a key input" in capsys.readouterr().err


def test_key_guidance_changes_the_piece_and_stays_deterministic(model):
    guided = model.generate(bars=2, seed=3)[0].tokens
    assert np.array_equal(guided, model.generate(bars=2, seed=3)[0].tokens)
    assert not np.array_equal(guided, model.generate(bars=2, seed=3, key_guidance=0)[0].tokens)


@pytest.mark.parametrize("bad", [dict(bars=0), dict(temperature=0), dict(top_p=1.5), dict(num_samples=0),
                                 dict(key_guidance=-1), dict(key_guidance=float("inf"))])
def test_bad_options_raise(model, bad):
    with pytest.raises(ValueError):
        model.generate(**{"bars": 1, **bad})


def test_the_command_writes_names_and_never_overwrites(tiny_pair, tmp_path, capsys):
    args = ["--checkpoint-dir", str(tiny_pair), "--out", str(tmp_path), "--bars", "2", "--seed", "5", "--png",
            "--device", "cpu"]
    assert generate.main(args) == 0
    written = capsys.readouterr().out.split()
    assert [Path(p).name for p in written] == ["bachsformer-seed5-2bars-t1.mid", "bachsformer-seed5-2bars-t1.png"]
    first = Path(written[0]).read_bytes()
    assert generate.main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert generate.main(args + ["--force"]) == 0
    assert Path(written[0]).read_bytes() == first  # same seed, same bytes


@pytest.mark.parametrize("args, words", [
    (["--temperature", "0"], "--temperature"),
    (["--top-p", "0"], "--top-p"),
    (["--bars", "-3"], "argument --bars: must be at least 1"),
    (["--device", "tpu"], "device"),
    (["--meter", "3/5"], "--meter"),
    (["--checkpoint-dir", "/no/such/folder"], "no such checkpoint folder"),
    (["--prompt", "/no/such.mid"], "no such file"),
    (["--key-plan", "988-v01"], "--key-plan needs a model trained with local keys"),
    (["--key-guidance", "-0.5"], "--key-guidance"),
])
def test_bad_input_is_one_line_and_exit_code_2(tiny_pair, tmp_path, capsys, args, words):
    base = ["--checkpoint-dir", str(tiny_pair), "--out", str(tmp_path), "--bars", "1"]
    assert generate.main(base + args) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_a_corrupt_checkpoint_is_one_line(tiny_pair, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "vae.pt").write_bytes((tiny_pair / "vae.pt").read_bytes()[:1000])
    (broken / "transformer.pt").write_bytes((tiny_pair / "transformer.pt").read_bytes())
    assert generate.main(["--checkpoint-dir", str(broken), "--out", str(tmp_path)]) == 2
    assert "corrupt or truncated" in capsys.readouterr().err


def test_the_script_runs_as_a_process(tiny_pair, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "generate.py"), "--checkpoint-dir", str(tiny_pair),
                             "--out", str(tmp_path / "one.mid"), "--bars", "1"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "one.mid").exists() and result.stdout.strip().endswith("one.mid")


def test_the_bundled_weights_load_and_write_music(tmp_path):
    """The pair in checkpoints/ is what users run first: it must load with this code and play."""
    bundled = ROOT / "checkpoints"
    if not (bundled / "vae.pt").exists() or not (bundled / "transformer.pt").exists():
        pytest.skip(f"no bundled weights in {bundled}")
    model = Bachsformer.from_checkpoints(bundled, "cpu")
    piece = model.generate(bars=2, seed=0, form="through")[0]
    assert piece.frames.shape[0] == 2 * model.meter[0] * 4 // model.meter[1]
    assert len(piece.midi.instruments[0].notes) > 0
    if model.plans:  # the default: a binary variation of four 16-bar sections
        assert model.generate(seed=0)[0].frames.shape[0] == 64 * model.meter[0] * 4 // model.meter[1]


def test_each_run_writes_a_new_piece_and_says_its_seed(tiny_pair, tmp_path, capsys):
    base = ["--checkpoint-dir", str(tiny_pair), "--out", str(tmp_path), "--bars", "1"]
    assert generate.main(base) == 0 and generate.main(base) == 0
    first, second = sorted(tmp_path.glob("*.mid"))
    assert first.name != second.name, "no --seed: a fresh seed each run, never the same file"
    err = capsys.readouterr().err
    seed = int(next(line for line in err.splitlines() if line.startswith("seed ")).split()[1].rstrip(":"))
    assert f"--seed {seed}" in err and any(f"seed{seed}-" in p.name for p in (first, second))


def test_a_batch_holds_the_pieces_of_its_seeds(tiny_pair, tmp_path):
    base = ["--checkpoint-dir", str(tiny_pair), "--bars", "2"]
    assert generate.main(base + ["--seed", "5", "--num-samples", "3", "--out", str(tmp_path / "batch")]) == 0
    assert generate.main(base + ["--seed", "6", "--out", str(tmp_path / "alone.mid")]) == 0
    names = sorted(p.name for p in (tmp_path / "batch").glob("*.mid"))
    assert names == [f"bachsformer-seed{s}-2bars-t1.mid" for s in (5, 6, 7)]
    assert (tmp_path / "batch" / names[1]).read_bytes() == (tmp_path / "alone.mid").read_bytes()


def test_file_names_name_everything_that_changes_the_music(tiny_pair, tmp_path):
    args = ["--checkpoint-dir", str(tiny_pair), "--out", str(tmp_path), "--bars", "1", "--seed", "4"]
    for extra in ([], ["--bpm", "90"], ["--meter", "3/4"], ["--program", "0"], ["--transpose", "2"]):
        assert generate.main(args + extra) == 0, extra
    assert len(list(tmp_path.glob("*.mid"))) == 5


@pytest.fixture(scope="module")
def plan_model(tiny_plan_pair):
    return Bachsformer.from_checkpoints(tiny_plan_pair, "cpu")


def test_a_binary_variation_plays_a_then_b_each_twice(plan_model):
    piece = plan_model.generate(seed=3, meter=(3, 4))[0]
    section = 16 * 3  # frames of 16 bars of 3/4
    assert len(piece.frames) == 4 * section and len(piece.tokens) == 2 * section * 16
    codes = plan_model.vae.encode_indices(torch.from_numpy(piece.frames).float()).numpy()
    assert np.array_equal(codes[:section], codes[section:2 * section]), "A is written out twice"
    assert np.array_equal(codes[2 * section:3 * section], codes[3 * section:]), "and so is B"
    assert [(n, d) for n, d in [(ts.numerator, ts.denominator) for ts in piece.midi.time_signature_changes]] == [(3, 4)]


def test_the_plan_a_binary_variation_is_told(plan_model, monkeypatch):
    """A and B are each written as their second statement, told their section and bars."""
    from bachsformer.tokens import EXTRA_INPUTS

    seen = []

    def fake_generate(idx, max_new_tokens, extras=None, **_):
        seen.append(extras[0, ::16].numpy())
        return torch.cat([idx, torch.zeros(idx.shape[0], max_new_tokens, dtype=idx.dtype)], dim=1)

    monkeypatch.setattr(plan_model.transformer, "generate", fake_generate)
    plan_model.generate(seed=0, meter=(3, 4), key="D minor")
    column = {name: plan_model.extra_inputs.index(name) for name in ("piece_key", "section", "bar_in_section")}
    # the first draw writes A; B is the first whole section placed last (closing bars are redrawn shorter)
    a = seen[0]
    b = next(x for x in seen if len(x) > 48 and (x[-48:, column["section"]] == 3).all())
    assert (a[:, column["piece_key"]] == 14).all() and (b[:, column["piece_key"]] == 14).all()
    # A is written as its second statement, whose ending closes the first half, after a silent frame
    assert a[1:, column["section"]].tolist() == [1] * 48 and a[1:, column["bar_in_section"]].tolist() == np.repeat(np.arange(16), 3).tolist()
    # B as the last, whose ending closes the piece, after A's closing bars where B's first statement ends
    assert b[-48:, column["section"]].tolist() == [3] * 48 and set(b[:-48, column["section"]].tolist()) == {2}
    assert set(EXTRA_INPUTS) >= set(plan_model.extra_inputs)


@pytest.mark.parametrize("key", ["C major", "a minor", "Bb", 19])
def test_a_key_is_asked_for_by_name_or_number(plan_model, key):
    assert len(plan_model.generate(seed=0, key=key, form="through", bars=1)) == 1


@pytest.mark.parametrize("options, words", [({"key": "H major"}, "not a key"), ({"key": 24}, "key must be"),
                                            ({"form": "sonata"}, "form must be")])
def test_bad_plan_options_are_refused(plan_model, options, words):
    with pytest.raises(ValueError, match=words):
        plan_model.generate(seed=0, bars=1, **options)


def test_a_continuation_keeps_the_meter_of_its_body_and_its_median_tempo(model, tmp_path):
    """A prompt in 3/4 at 90 that ends with a 1/8 bar and a ritardando goes on in 3/4 at 90."""
    notes = [(60 + (i % 5), i * 0.5, i * 0.5 + 0.5) for i in range(24)] + [(60, 12.0, 12.5)]
    path = write_midi(tmp_path / "p.mid", notes, time_signatures=((0.0, 3, 4), (12.0, 1, 8)),
                      tempos=((0.0, 90.0), (9.0, 40.0)))
    prompt = score_to_piece(read_midi(path), model.grid)
    piece = model.generate(seed=0, bars=2, prompt=prompt)[0]
    piece.midi.write(str(tmp_path / "out.mid"))
    back = read_midi(tmp_path / "out.mid")
    assert back.time_signatures[-1][1:] == (3, 4) and back.time_signatures[-2][1:] == (1, 8)
    assert back.tempos[-1][1] == pytest.approx(90.0)
    assert len(piece.frames) - piece.prompt_frames == 6  # two bars of 3/4


def test_the_script_writes_a_binary_variation_in_the_key_asked_for(tiny_plan_pair, tmp_path):
    args = ["--checkpoint-dir", str(tiny_plan_pair), "--out", str(tmp_path), "--seed", "2"]
    assert generate.main(args) == 0 and generate.main(args + ["--key", "E minor"]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.mid")) == ["bachsformer-seed2-binary-E-minor-t1.mid",
                                                             "bachsformer-seed2-binary-t1.mid"]
    assert generate.main(args + ["--key", "E dorian"]) == 2


def test_a_piece_writes_its_midi_and_picture_and_takes_a_prompt_by_path(plan_model, tmp_path):
    prompt = write_midi(tmp_path / "theme.mid", [(60 + i % 5, i * 0.5, i * 0.5 + 0.5) for i in range(16)])
    piece = plan_model.generate(seed=1, bars=1, prompt=str(prompt), meter="3/4")[0]
    piece.write(tmp_path / "out.mid")
    piece.to_png(tmp_path / "out.png")
    assert read_midi(tmp_path / "out.mid").time_signatures[-1][1:] == (3, 4)
    assert (tmp_path / "out.png").read_bytes()[:4] == b"\x89PNG" and piece.prompt_beats == 8.0
    with pytest.raises(ValueError, match="not a time signature"):
        plan_model.generate(seed=1, bars=1, meter="5/3")


def test_a_silent_piece_is_said(tiny_pair, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Bachsformer, "_decode", lambda self, indices, context: np.zeros(
        (len(indices), indices.shape[1], *self.grid.frame_shape), dtype=np.uint8))
    assert generate.main(["--checkpoint-dir", str(tiny_pair), "--out", str(tmp_path), "--bars", "1", "--seed", "0"]) == 0
    assert "has no notes: the model wrote silence" in capsys.readouterr().err


def test_bars_imply_a_through_composed_piece_and_binary_refuses_them(tiny_plan_pair, tmp_path, capsys):
    base = ["--checkpoint-dir", str(tiny_plan_pair), "--device", "cpu", "--seed", "2"]
    assert generate.main(base + ["--bars", "2", "--out", str(tmp_path / "a")]) == 0
    written = capsys.readouterr().out.split()[0]
    assert "2bars" in written and "binary" not in written
    assert generate.main(base + ["--form", "binary", "--bars", "2", "--out", str(tmp_path / "b")]) == 2
    assert "--bars applies to a through-composed piece" in capsys.readouterr().err



def test_candidates_are_drawn_until_one_passes_and_the_best_first_is_kept(plan_model, monkeypatch):
    # each candidate's codes begin with its own check results, which the stand-in scorer reads back
    results = {0: [(1, 1)], 1: [(0, 1), (1, 0), (1, 1), (0, 0)], 2: [(0, 1), (1, 0), (0, 0), (1, 0)]}
    drawn = []

    def draw(rows, j):
        drawn.append((list(rows), j))
        return torch.tensor([[*results[r][j], r, j] for r in rows])

    monkeypatch.setattr(plan_model, "_scores", lambda tokens, checks: [tuple(bool(x) for x in row[:2]) for row in tokens.tolist()])
    chosen = plan_model._choose(draw, 4, [None, None], 3)
    assert [row[3] for row in chosen.tolist()] == [0, 2, 1]  # candidate kept per sample
    assert drawn == [([0, 1, 2], 0), ([1, 2], 1), ([1, 2], 2), ([2], 3)]  # sample 0 passed at once


def test_a_minor_key_draws_more_candidates_for_each_half(plan_model, monkeypatch):
    from bachsformer.generation import MINOR_KEY_DRAWS
    from bachsformer.tonality import parse_key
    budgets, choose = [], plan_model._choose

    def spy(draw, k, checks, n):
        budgets.append(k)
        return choose(draw, k, checks, n)

    monkeypatch.setattr(plan_model, "_choose", spy)
    plan_model.generate(seed=0, key=parse_key("D minor"), candidates=3, meter=(3, 4))
    plan_model.generate(seed=0, key=parse_key("D major"), candidates=3, meter=(3, 4))
    assert budgets == [3 * MINOR_KEY_DRAWS] * 2 + [3, 3]
