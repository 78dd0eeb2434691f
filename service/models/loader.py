"""Load one model from a local directory with transformers' Auto classes; nothing is fetched from a hub.

The directory is either a normal transformers folder (``config.json`` plus weights, and a tokenizer or an
image processor config) or a folder holding one ``.gguf`` file (a causal LM, dequantized to dense weights
at load time); a path straight to a ``.gguf`` file also works. The task comes from the ``task`` argument,
else from ``aimserve.json`` beside the weights, else from ``config.json``'s ``architectures``. Any problem
is a ConfigError naming the path and what is wrong.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.errors import ConfigError
from service.models.inputs import InputLimits
from service.models.keyview import INPUT, KEY_VIEWS
from service.models.loaded import LoadedModel
from service.models.placement import resolve_device, resolve_dtype

if TYPE_CHECKING:
    from service.tasks.base import Task

MANIFEST = "aimserve.json"


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; ConfigError naming the file when it is unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object, found {type(data).__name__}")
    return data


def _locate(path: Path) -> tuple[Path, str | None]:
    """(model directory, GGUF file name or None) for a directory or a ``.gguf`` file path."""
    if path.is_file() and path.suffix == ".gguf":
        return path.parent, path.name
    if not path.exists():
        raise ConfigError(f"model directory {path} does not exist")
    if not path.is_dir():
        raise ConfigError(f"model path {path} is neither a directory nor a .gguf file")
    if (path / "config.json").is_file():
        return path, None
    ggufs = sorted(p.name for p in path.glob("*.gguf"))
    if len(ggufs) == 1:
        return path, ggufs[0]
    if len(ggufs) > 1:
        raise ConfigError(f"model directory {path} holds several .gguf files {ggufs}; pass the path of one")
    raise ConfigError(
        f"model directory {path} has no config.json and no .gguf file: it is not a model folder"
    )


def infer_task(directory: Path, gguf_file: str | None, task: str | None) -> str:
    """The task: explicit, else ``aimserve.json``'s ``task``, else from ``architectures``, else GGUF."""
    from service.tasks import (  # tasks build on models
        NAMES,
        TEXT_GENERATION,
        task_named,
        task_of_architecture,
    )

    if task is not None:
        return task_named(task).name
    if (directory / MANIFEST).is_file():
        declared = read_json(directory / MANIFEST).get("task")
        if declared in NAMES:
            return str(declared)
        if declared is not None:
            raise ConfigError(f"{directory / MANIFEST} declares task {declared!r}; expected one of {NAMES}")
    if gguf_file is not None:
        return TEXT_GENERATION.name
    architectures = read_json(directory / "config.json").get("architectures") or []
    for architecture in architectures:
        inferred = task_of_architecture(str(architecture))
        if inferred is not None:
            return inferred.name
    raise ConfigError(
        f"cannot infer the task of {directory}: config.json names architectures {architectures}; "
        f"set the task explicitly (one of {', '.join(NAMES)})"
    )


def load_model(
    path: Path | str,
    *,
    task: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    limits: InputLimits | None = None,
) -> LoadedModel:
    """Load the model at ``path`` for ``task`` on ``device`` in ``dtype`` (see ``placement``), eval mode.

    ``limits`` bounds each input given to ``LoadedModel.prepare`` (defaults: ``InputLimits()``).
    """
    directory, gguf_file = _locate(Path(path))
    from service.tasks import task_named  # tasks build on models: looked up at use

    resolved_task = infer_task(directory, gguf_file, task)
    kind = task_named(resolved_task)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    try:
        parts = _load_parts(directory, gguf_file, kind, torch_dtype)
        model = parts["model"].to(torch_device).eval()
    except ConfigError:
        raise
    except (
        Exception
    ) as exc:  # transformers and torch raise OSError, ValueError, KeyError, RuntimeError (CUDA OOM) alike
        raise ConfigError(
            f"cannot load {directory} for {resolved_task}: {type(exc).__name__}: {exc}"
        ) from exc
    manifest = read_json(directory / MANIFEST) if (directory / MANIFEST).is_file() else {}
    name = str(manifest.get("name") or (Path(gguf_file).stem if gguf_file else directory.name))
    key_view = manifest.get("key_view", INPUT)
    if key_view not in KEY_VIEWS:
        raise ConfigError(
            f"{directory / MANIFEST} declares key_view {key_view!r}; expected one of {KEY_VIEWS}"
        )
    if key_view not in kind.key_views:  # checked here once: the task's forward trusts its key view
        raise ConfigError(
            f"{directory / MANIFEST} declares key_view {key_view!r}, which {resolved_task} does not "
            f"support; it takes one of {kind.key_views}"
        )
    return LoadedModel(
        name=name,
        task=resolved_task,
        labels=_labels(model.config, kind, directory),
        device=torch_device,
        dtype=torch_dtype,
        path=directory,
        model=model,
        num_classes=_num_classes(model, kind),
        tokenizer=parts.get("tokenizer"),
        image_processor=parts.get("image_processor"),
        image_mode="L" if getattr(model.config, "num_channels", 3) == 1 else "RGB",
        max_length=_max_length(model.config, parts.get("tokenizer")),
        limits=limits or InputLimits(),
        key_view=str(key_view),
    )


def _load_parts(directory: Path, gguf_file: str | None, task: Task, dtype: Any) -> dict[str, Any]:
    """The transformers objects for ``task``: ``model`` plus ``tokenizer`` or ``image_processor``."""
    tf: Any = importlib.import_module("transformers")  # heavy: imported only when a model is loaded

    common: dict[str, Any] = {"local_files_only": True}
    if task.generates and gguf_file is not None:
        common["gguf_file"] = gguf_file
        quantization = tf.GgufConfig(gguf_file=gguf_file, dequantize=True)
        model = getattr(tf, task.auto_class).from_pretrained(
            directory, dtype=dtype, quantization_config=quantization, **common
        )
        has_tokenizer = (directory / "tokenizer.json").is_file()
        tokenizer = tf.AutoTokenizer.from_pretrained(
            directory, **({"local_files_only": True} if has_tokenizer else common)
        )
        return {"model": model, "tokenizer": _for_generation(tokenizer)}
    model = getattr(tf, task.auto_class).from_pretrained(directory, dtype=dtype, **common)
    if task.input_kind == "image":
        return {"model": model, "image_processor": tf.AutoImageProcessor.from_pretrained(directory, **common)}
    tokenizer = tf.AutoTokenizer.from_pretrained(directory, **common)
    return {"model": model, "tokenizer": _for_generation(tokenizer) if task.generates else tokenizer}


def _for_generation(tokenizer: Any) -> Any:
    """Left padding (batched decoding appends on the right) and a pad token (the EOS when none is set)."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _labels(config: Any, task: Task, directory: Path) -> list[str]:
    """Class names by id from ``id2label``; [] for a generating task (its classes are the vocabulary)."""
    if task.generates:
        return []
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    if sorted(id2label) != list(range(len(id2label))) or not id2label:
        raise ConfigError(f"{directory / 'config.json'} has no usable id2label (ids must be 0..C-1)")
    return [id2label[i] for i in range(len(id2label))]


def _num_classes(model: Any, task: Task) -> int:
    """C of the logits: number of labels, or the output vocabulary size for a generating task."""
    if task.generates:
        return int(model.get_output_embeddings().weight.shape[0])
    return int(model.config.num_labels)


def _max_length(config: Any, tokenizer: Any) -> int:
    """Token limit: the smaller of the tokenizer's ``model_max_length`` and the position embeddings."""
    limits = [int(getattr(config, "max_position_embeddings", 0) or 0)]
    if tokenizer is not None:
        limits.append(int(min(getattr(tokenizer, "model_max_length", 0) or 0, 10**9)))
    usable = [limit for limit in limits if limit > 0]
    return min(usable) if usable else 512
