"""Serving: the dynamic batcher and the engines that join a loaded model with the modulation core."""

from __future__ import annotations
