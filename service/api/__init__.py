"""The HTTP gateway: the only package that imports FastAPI."""

from __future__ import annotations
