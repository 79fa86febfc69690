"""Output files written whole or not at all.

The content goes to a hidden file of a name of its own beside the file (beside
its target, through a link), renamed over it once complete, with the old
file's mode: a full disk or a crash leaves the file as it was, never cut
short, and no other file beside it is touched. A device or a pipe is written
in place, as a rename would replace the node itself.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def written_whole(path: Path) -> Iterator[Path]:
    """The path to write `path`'s new content to; in place once the block ends.

    An exception in the block leaves `path` as it was and removes what was
    written.
    """
    # Asked before resolving: /dev/stdout resolves to a pipe's name that no
    # path opens, but opens as itself.
    if path.exists() and not path.is_file():
        yield path
        return
    target = path.resolve()
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        _take_mode(temporary, target)
        yield temporary
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _take_mode(temporary: Path, target: Path) -> None:
    if target.exists():
        shutil.copymode(target, temporary)
        return
    # As open() would create it: 0666 less the umask, not mkstemp's 0600.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)
