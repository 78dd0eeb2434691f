"""The modulation core: keyed noise, the utility and focus modulators, exact theory and calibration.

Pure torch (plus numpy/scipy for theory): nothing here imports the web layer, the store or metrics.
"""

from __future__ import annotations

from service.modulation.batch import BOOST, SUPPRESS, ModulationBatch, RowSpec
from service.modulation.keys import RowKey, derive_row_key, input_digest
from service.modulation.modulators import focus_modulation, modulate, utility_modulation

__all__ = [
    "BOOST",
    "SUPPRESS",
    "ModulationBatch",
    "RowKey",
    "RowSpec",
    "derive_row_key",
    "focus_modulation",
    "input_digest",
    "modulate",
    "utility_modulation",
]
