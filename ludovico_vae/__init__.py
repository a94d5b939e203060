"""Ludovico: quantised MIDI as quarter-note piano-roll frames, and the VQ-VAE that compresses them."""
from .dataset import corpus_hash, find_midi_files, load_piece, load_pieces
from .frames import FrameGrid, Piece, roll_to_notes, score_to_piece
from .midi import MidiError, Notes, Score, keyboard_reference, read_midi, score_to_midi

__all__ = ["FrameGrid", "MidiError", "Notes", "Piece", "Score", "corpus_hash", "find_midi_files",
           "keyboard_reference", "load_piece", "load_pieces", "read_midi", "roll_to_notes",
           "score_to_midi", "score_to_piece"]
