"""Files that appear whole or not at all: each is written aside, then renamed over its final name, so a reader (another
session, the app polling a run, a resumed trainer) sees the old file or the new one, never half of one, whenever the
writer is killed."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL_PATTERN = ".*.part-*"  # the private folder of a write in progress, beside its file


@contextmanager
def written_whole(path: str | Path) -> Iterator[Path]:
    """A path to write `path`'s new content to; it replaces `path` when the block ends without an error, and is gone
    when it raises. The path has the final name (inside a private folder beside it), so writers that read the format
    from the name (Keras' `.keras` and `.weights.h5`, Matplotlib's `.png`, NumPy's `.npy`/`.npz`) work as usual."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.part-"))
    try:
        partial = folder / path.name
        yield partial
        os.replace(partial, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def partial_writes(folder: Path) -> list[Path]:
    """What writers killed mid-write left in `folder` (a killed process cannot clean up after itself)."""
    return sorted(folder.glob(PARTIAL_PATTERN))


def remove_partial_writes(folder: Path) -> None:
    for partial in partial_writes(folder):
        shutil.rmtree(partial, ignore_errors=True)


def write_text(path: str | Path, text: str) -> None:
    with written_whole(path) as partial:
        partial.write_text(text)


def write_bytes(path: str | Path, data: bytes) -> None:
    with written_whole(path) as partial:
        partial.write_bytes(data)
