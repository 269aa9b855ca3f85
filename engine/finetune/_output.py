"""The adapter folder's life: chosen and refused before anything loads, locked while a run
writes it, and only ever replaced whole.

Every save fills a temporary sibling folder and renames it into place, so a run killed at
any point leaves the best checkpoint so far, never half of one; a kill between the two
renames that replace an existing folder leaves the previous one as ``.NAME.old-*``. The
metadata file alone is rewritten by one rename too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.generation import METADATA_FILE, adapter_home

__all__ = ["adapter_spelling", "exclusive", "output_folder", "save_checkpoint", "save_metadata"]


def output_folder(name: str, output: str | Path | None, overwrite: bool) -> Path:
    """The adapter folder (``output``, else ``adapter_home() / name``), refused when it
    exists (unless ``overwrite``) or is not an adapter folder (even with ``overwrite``:
    replacing it would delete the user's files).

    Raises:
        ConfigError: the folder may not be written.
    """
    target = adapter_home() / name if output is None else Path(output).expanduser().absolute()
    if not (target.exists() or target.is_symlink()):
        return target
    if not overwrite:
        raise ConfigError(
            f"adapter folder {target} already exists; pass --overwrite to replace it "
            "or choose another --name"
        )
    is_adapter = (target / "adapter_config.json").is_file() or (target / METADATA_FILE).is_file()
    if target.is_symlink() or not target.is_dir() or not (is_adapter or not any(target.iterdir())):
        raise ConfigError(f"{target} exists and is not an adapter folder; refusing to replace it")
    return target


@contextlib.contextmanager
def exclusive(target: Path) -> Iterator[None]:
    """Hold a lock beside ``target`` so two runs never write one folder, and clear the
    temporary folders a killed run left.

    Raises:
        ConfigError: the parent folder cannot be created, or another run holds the lock.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot create {target.parent}: {error.strerror or error}") from None
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; the renames still keep folders whole
        yield
        return
    with open(target.parent / f".{target.name}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another finetune is writing {target}; wait for it") from None
        for stale in target.parent.glob(f".{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def save_checkpoint(target: Path, model: Any, metadata: dict[str, Any]) -> None:
    """Replace ``target`` with ``model``'s ``save_pretrained`` files and ``metadata``."""

    def fill(folder: Path) -> None:
        model.save_pretrained(folder)
        _write_json(folder / METADATA_FILE, metadata)

    _replace_folder(target, fill)


def save_metadata(target: Path, metadata: dict[str, Any]) -> None:
    """Rewrite the metadata file of ``target``, beside the weights already there."""
    path = target / METADATA_FILE
    tmp = path.with_name(f".{METADATA_FILE}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        _write_json(tmp, metadata)
        os.replace(tmp, path)  # one rename: the file is old or new, never partial
    finally:
        tmp.unlink(missing_ok=True)


def adapter_spelling(target: Path) -> str:
    """How a candidate names the adapter in ``target``: the registered name when it is
    under ``adapter_home()``, else the path."""
    home = adapter_home().absolute()
    return target.name if target.absolute().parent == home else str(target)


def _replace_folder(target: Path, fill: Callable[[Path], None]) -> None:
    """Fill a temporary sibling of ``target`` and rename it into place; an existing
    ``target`` is renamed away first and deleted after."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        fill(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; an adapter folder is a normal folder
        if target.exists():
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
