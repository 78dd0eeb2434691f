"""aimserve: one model, many behaviours, by redistributing its logits per request (AIM, WWW'25)."""

from __future__ import annotations

__version__ = "0.1.0"
