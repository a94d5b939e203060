"""Note-level F1 as docs/evaluation.md defines it: mir_eval's matcher with times in beats."""
from __future__ import annotations

import numpy as np

from ludovico_vae.midi import Notes

from ..errors import MissingExtraError

ONSET_TOLERANCE = 1 / 48  # beats
OFFSET_RATIO = 0.2
OFFSET_MIN_TOLERANCE = 1 / 8  # beats


def _mir_eval_transcription():
    try:
        import mir_eval.transcription
    except ImportError:
        raise MissingExtraError("note F1 needs mir_eval, a dependency of bachsformer: pip install mir_eval") from None
    return mir_eval.transcription


def _as_mir_eval(notes: Notes) -> tuple:
    intervals = np.stack([notes.start, notes.end], axis=1) if len(notes) else np.zeros((0, 2))
    # mir_eval wants pitches in Hz; any strictly increasing map of MIDI numbers matches the same
    return intervals, 440.0 * 2.0 ** ((notes.pitch - 69) / 12.0)


def note_f1(reference: Notes, estimate: Notes) -> dict:
    """Onset F1 (offsets ignored) and note F1 (offsets within 20% or 1/8 beat) of two note lists."""
    transcription = _mir_eval_transcription()
    ref, est = _as_mir_eval(reference), _as_mir_eval(estimate)
    if not len(reference) or not len(estimate):
        empty = float(len(reference) == len(estimate))
        return {"onset_f1": empty, "note_f1": empty, "reference_notes": len(reference), "estimated_notes": len(estimate)}
    *_, onset_f1, _ = transcription.precision_recall_f1_overlap(
        *ref, *est, onset_tolerance=ONSET_TOLERANCE, offset_ratio=None)
    *_, f1, _ = transcription.precision_recall_f1_overlap(
        *ref, *est, onset_tolerance=ONSET_TOLERANCE, offset_ratio=OFFSET_RATIO,
        offset_min_tolerance=OFFSET_MIN_TOLERANCE)
    return {"onset_f1": float(onset_f1), "note_f1": float(f1),
            "reference_notes": len(reference), "estimated_notes": len(estimate)}


def cell_f1(reference: np.ndarray, estimate: np.ndarray) -> float:
    """F1 of the active cells of two binary rolls of the same shape."""
    ref, est = reference.astype(bool), estimate.astype(bool)
    hits = np.logical_and(ref, est).sum()
    total = ref.sum() + est.sum()
    return 1.0 if total == 0 else float(2 * hits / total)
