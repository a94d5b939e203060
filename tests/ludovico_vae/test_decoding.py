"""Note-by-note decoding of the VQ-VAE's logits (ludovico_vae.decoding, VQVAE.decode_pieces)."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bachsformer.evaluate.commands import main as evaluate_main
from ludovico_vae.decoding import HELD, SILENT, STRUCK, NoteDecoder, decode_notes
from ludovico_vae.frames import frames_to_roll, roll_to_notes
from ludovico_vae.model import VQVAE, VQVAEConfig

SURE = 12.0  # log-odds of a cell the decoder is sure of


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def brute_force(onset: np.ndarray, sounding: np.ndarray, note_cost: float) -> tuple:
    """The best state sequence of one row by trying them all: (onset, sounding) bool (cells,)."""
    best, best_states = -np.inf, None
    for states in itertools.product((SILENT, STRUCK, HELD), repeat=len(onset)):
        if states[0] == HELD or any(b == HELD and a == SILENT for a, b in zip(states, states[1:])):
            continue  # a note is only held after it is struck
        score = 0.0
        for s, o, k in zip(states, onset, sounding):
            score += _log_sigmoid(k if s != SILENT else -k) + _log_sigmoid(o if s == STRUCK else -o)
            score -= note_cost * (s == STRUCK)
        if score > best:
            best, best_states = score, np.array(states)
    return best_states == STRUCK, best_states != SILENT


@pytest.mark.parametrize("note_cost", [0.0, 2.0])
def test_viterbi_finds_the_best_sequence(note_cost):
    rng = np.random.default_rng(0)
    onset, sounding = rng.normal(-1, 3, (6, 5)), rng.normal(0, 3, (6, 5))  # 6 cells, 5 rows
    got_onset, got_sounding = decode_notes(onset, sounding, note_cost)
    for row in range(5):
        want_onset, want_sounding = brute_force(onset[:, row], sounding[:, row], note_cost)
        assert np.array_equal(got_onset[:, row], want_onset), row
        assert np.array_equal(got_sounding[:, row], want_sounding), row


def roll_log_odds(roll: np.ndarray) -> tuple:
    """A sure decoder's log-odds of a roll (2, K, L): time first, (L, K) each."""
    odds = np.where(roll.astype(bool), SURE, -SURE)
    return odds[0].T, odds[1].T


def test_a_sure_roll_comes_back_as_it_was():
    roll = np.zeros((2, 3, 12), dtype=np.uint8)
    roll[:, 0, 2:7] = [[1, 0, 0, 1, 0], [1, 1, 1, 1, 1]]  # struck, held, struck again
    roll[:, 2, 0:12] = [[1] + [0] * 11, [1] * 12]  # from the first cell to the last
    roll[:, 1, 11] = 1  # one cell at the very end
    onset, sounding = decode_notes(*roll_log_odds(roll), note_cost=2.0)
    assert np.array_equal(onset.T, roll[0]) and np.array_equal(sounding.T, roll[1])


def test_a_doubtful_cell_does_not_split_a_held_note():
    onset, sounding = np.full((8, 1), -SURE), np.full((8, 1), SURE)
    onset[0] = SURE
    sounding[4] = -0.5  # one cell the decoder leans (a little) to silence in
    cell_by_cell = roll_to_notes(np.stack([(onset > 0).T, (sounding > 0).T]).astype(np.uint8), 24)
    assert len(cell_by_cell) == 2, "deciding each cell splits the note"
    decoded = decode_notes(onset, sounding, note_cost=0.0)
    notes = roll_to_notes(np.stack([decoded[0].T, decoded[1].T]).astype(np.uint8), 24)
    assert len(notes) == 1 and notes.end[0] == 8 / 24


def test_the_note_cost_drops_a_stray_cell():
    onset, sounding = np.full((8, 1), -SURE), np.full((8, 1), -SURE)
    onset[3], sounding[3] = 1.0, 1.0  # a weak note of one cell
    assert decode_notes(onset, sounding, note_cost=0.0)[1].sum() == 1
    assert decode_notes(onset, sounding, note_cost=3.0)[1].sum() == 0


def test_carried_notes_go_on_without_a_new_onset():
    onset, sounding = np.full((4, 2), -SURE), np.full((4, 2), SURE)
    onset_fresh, sounding_fresh = decode_notes(onset, sounding, 2.0)
    assert onset_fresh[0].all(), "without a carry a sounding key must be struck"
    onset_carried, sounding_carried = decode_notes(onset, sounding, 2.0, carry=np.array([True, False]))
    assert not onset_carried[:, 0].any() and sounding_carried[:, 0].all()
    assert onset_carried[0, 1], "only the carried key goes on"


def test_chunks_decode_as_the_whole():
    rng = np.random.default_rng(1)
    onset, sounding = rng.normal(-2, 3, (100, 7)), rng.normal(0, 3, (100, 7))
    whole = decode_notes(onset, sounding, 2.0)
    decoder = NoteDecoder(7, 2.0)
    for start in range(0, 100, 13):
        decoder.push(onset[start:start + 13], sounding[start:start + 13])
    for got, want in zip(decoder.finish(), whole):
        assert np.array_equal(got, want)


def test_decoder_rejects_bad_input():
    with pytest.raises(ValueError, match="note_cost"):
        NoteDecoder(3, -1.0)
    with pytest.raises(ValueError, match=r"\(cells, 3\)"):
        NoteDecoder(3, 1.0).push(np.zeros((5, 4)), np.zeros((5, 4)))


def small_model(**overrides) -> VQVAE:
    torch.manual_seed(0)
    return VQVAE(VQVAEConfig(widths=(8, 16), code_dim=8, n_res_blocks=1, codebook_size=32, **overrides)).eval()


def test_decode_pieces_without_a_note_cost_decides_each_cell():
    model = small_model(note_cost=None)
    indices = torch.randint(32, (2, 5, 16), generator=torch.Generator().manual_seed(0))
    frames = model.decode_pieces(indices, chunk=2)
    want = model.decode_indices(indices.reshape(-1, 16), binary=True).reshape(frames.shape)
    assert frames.dtype == np.uint8 and np.array_equal(frames, want.numpy())


def test_decode_pieces_decodes_each_piece_across_its_frames():
    model = small_model()
    indices = torch.randint(32, (3, 6, 16), generator=torch.Generator().manual_seed(1))
    together = model.decode_pieces(indices, chunk=4)
    assert together.shape == (3, 6, 2, 88, 24) and together.dtype == np.uint8
    for i in range(3):
        alone = model.decode_pieces(indices[i:i + 1], chunk=1)[0]
        assert np.array_equal(together[i], alone), "pieces are decoded independently, in any chunks"
        # the same as decoding the piece's logits as one roll
        logits = model.decode_indices(indices[i]) - model.threshold  # (6, 2, 88, 24)
        roll = frames_to_roll(logits.numpy())
        onset, sounding = decode_notes(roll[0].T, roll[1].T, model.config.note_cost)
        assert np.array_equal(frames_to_roll(alone), np.stack([onset.T, sounding.T]).astype(np.uint8))
    onset, sounding = together[:, :, 0].astype(bool), together[:, :, 1].astype(bool)
    assert not (onset & ~sounding).any(), "an onset cell always sounds"


@pytest.mark.parametrize("note_cost", [None, 1.0])
def test_recurring_frames_go_through_the_network_once(note_cost, monkeypatch):
    """A section played twice decodes as if each frame were decoded on its own, and the network
    sees each distinct frame once; with no room for the distinct frames it streams as before."""
    import ludovico_vae.model as vae_model
    model = small_model(note_cost=note_cost)
    g = torch.Generator().manual_seed(2)
    a, b = torch.randint(32, (2, 5, 16), generator=g), torch.randint(32, (2, 4, 16), generator=g)
    indices = torch.cat([a, a, b, b, a], dim=1)  # (2, 23, 16): 18 distinct frames
    seen = []
    decode = model.decode_indices
    monkeypatch.setattr(model, "decode_indices", lambda codes, *args: seen.append(len(codes)) or decode(codes, *args))
    once = model.decode_pieces(indices, chunk=4)
    assert sum(seen) == 18
    seen.clear()
    monkeypatch.setattr(vae_model, "DISTINCT_LOGITS_BYTES", 0)
    streamed = model.decode_pieces(indices, chunk=4)
    assert sum(seen) == 2 * 23 and max(seen) == 2 * 4
    assert np.array_equal(once, streamed)


ROOT = Path(__file__).resolve().parents[2]


def test_note_decoding_rebuilds_more_of_a_held_out_piece(goldberg_dir, tmp_path):
    """What `note_cost` is for, on the bundled VQ-VAE and a variation it never trained on."""
    vae = ROOT / "checkpoints" / "vae.pt"
    if not vae.exists():
        pytest.skip(f"no bundled VQ-VAE at {vae}")
    scores = {}
    for cost in ("none", "2", "default"):
        out = tmp_path / f"{cost}.json"
        option = [] if cost == "default" else ["--note-cost", cost]
        assert evaluate_main(["reconstruct", "--vae", str(vae), str(goldberg_dir / "988-v10.mid"),
                              *option, "--json", str(out)]) == 0
        scores[cost] = json.loads(out.read_text())["summary"]
    assert scores["2"]["note_f1"] > scores["none"]["note_f1"] + 0.03
    assert scores["default"] == scores["2"], "the checkpoint's own cost is the config default"
    assert scores["2"]["codes_used"] == scores["none"]["codes_used"], "the codes are the same"


@pytest.mark.parametrize("value", ["-1", "cheap", "nan"])
def test_a_bad_note_cost_is_refused(value, capsys):
    assert evaluate_main(["reconstruct", "--vae", "x.pt", ".", "--note-cost", value]) == 2
    err = capsys.readouterr().err
    assert "--note-cost" in err and len(err.strip().splitlines()) == 1
