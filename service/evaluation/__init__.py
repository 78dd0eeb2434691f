"""The paper's experiments as commands: utility and focus sweeps, LLM answers under noise, calibration.

Every sweep computes a model's logits once per dataset and modulates them many times: the forward pass is
the cost, the modulation is cheap. Nothing here is imported by the serving path.
"""

from __future__ import annotations
