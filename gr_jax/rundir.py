"""Run directories: which folder a run may use, and writing its files so that a kill never
leaves half of one.

A run directory holds `.lock` (see `Claim`), `config.json` (written first, after `seeds.json`
for seeds run in one program), `checkpoints/`, and
at the end `results.json`; seeds run in one program add `seeds.json`, `seed=S/results.json` and
`summary.json`; a sweep point that diverged, `diverged.json`.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from gr_jax.config import Config, diff

# what gr_jax writes into a run directory: --overwrite deletes a folder holding nothing else
LOCK = ".lock"
RUN_FILES = (LOCK, "config.json", "results.json", "seeds.json", "summary.json", "diverged.json")
RUN_DIRS = ("checkpoints",)
_TMP = re.compile(r"\.[\w.=-]+\.[0-9a-f]{32}\.tmp")  # write_text's temporaries
_NO_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV)


class RunDirError(RuntimeError):
    """A run directory that cannot be used as asked (exists, belongs to another run, ...)."""


class Claim:
    """A process's hold on a run directory while it runs there: an exclusive `flock` on its
    `.lock`, which the system releases when the process ends, however it ends (a kill too).
    A second claim, from any process, is a RunDirError until then."""

    def __init__(self, out: Path):
        try:
            self._file = open(out / LOCK, "a")  # noqa: SIM115 - held open until release()
        except PermissionError:  # another user's lock file: flock needs no write access
            self._file = open(out / LOCK)  # noqa: SIM115
        for wait in (0.01, 0.02, 0.04, 0.08, None):  # out of another process's brief probe
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if wait is None:
                    self._file.close()
                    raise _under_way(out) from None
                time.sleep(wait)

    def release(self) -> None:
        self._file.close()

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _under_way(out: Path) -> RunDirError:
    return RunDirError(
        f"{out}: a run is under way there (another process holds {out / LOCK}); wait for it to "
        f"end or choose another --out"
    )


def _not_under_way(out: Path) -> None:
    """A RunDirError if a process holds `out`'s lock now (probed with a shared lock on a
    read-only handle, so a finished run in a read-only archive can still be read)."""
    try:
        f = open(out / LOCK)  # noqa: SIM115 - closed below
    except OSError:  # no lock file (no run has started there), or none we may read
        return
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _under_way(out) from None


def write_text(path: Path, text: str, exclusive: bool = False) -> None:
    """Write `path` atomically (a temporary file renamed over it), so a reader finds the old
    file or the new one, never half of one; `exclusive`: a RunDirError if `path` exists."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())  # on disk before the rename: a power loss leaves no empty file
    try:
        if not exclusive:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)  # fails if `path` exists, atomically
        except FileExistsError as e:
            if os.stat(tmp).st_nlink != 2:  # 2: made, but NFS lost the reply
                raise RunDirError(
                    f"{path} appeared meanwhile: another process uses {path.parent}"
                ) from e
        except OSError as e:  # a file system without hard links: claim, then fill
            if e.errno not in _NO_LINKS:
                raise
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
            except FileExistsError as e2:
                raise RunDirError(
                    f"{path} appeared meanwhile: another process uses {path.parent}"
                ) from e2
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, obj: Any, exclusive: bool = False) -> None:
    """`obj` as indented JSON, written atomically (`write_text`)."""
    write_text(path, json.dumps(obj, indent=1), exclusive)


def read_json(path: Path) -> Any | None:
    """The JSON in `path`, or None if it is missing or does not parse (a file cut short)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, IsADirectoryError, json.JSONDecodeError):
        return None


def _ours(entry: Path, top: bool = True) -> bool:
    """Whether `entry` is something gr_jax writes into a run directory (`top`: at its top)."""
    name = entry.name
    if entry.is_file():
        return bool(_TMP.fullmatch(name)) or name in (RUN_FILES if top else ("results.json",))
    if top and name in RUN_DIRS:
        return entry.is_dir()
    if top and entry.is_dir() and re.fullmatch(r"seed=-?\d+", name):
        return all(_ours(e, top=False) for e in entry.iterdir())
    return False


def _is_run_dir(out: Path) -> bool:
    """Whether `out` holds nothing but what gr_jax writes into a run, with its config.json; or,
    for a run cut short before its config.json was written, nothing but seeds.json and
    temporaries."""
    if not all(_ours(e) for e in out.iterdir()):
        return False
    if (out / "config.json").exists():
        try:
            Config.from_dict(json.loads((out / "config.json").read_text()))
            return True
        except (ValueError, TypeError):
            return False
    return all(e.name in (LOCK, "seeds.json") or _TMP.fullmatch(e.name) for e in out.iterdir())


Stamp = tuple[int, int, int] | None


def usable_folder(out: Path, writable: bool = True) -> None:
    """Raise RunDirError unless `out` is a folder, or can be made one, that this process may
    write in (`writable`; a finished run in a read-only archive may still be resumed): said
    before any work, not as a traceback after the data have loaded."""
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out} is a file, not a folder; choose another --out")
    existing = out
    while not existing.exists():
        if existing.is_symlink():  # a link to nowhere
            raise RunDirError(f"{existing} is a broken symbolic link; choose another --out")
        existing = existing.parent
    if not existing.is_dir():
        raise RunDirError(f"{out} cannot be made: {existing} is a file; choose another --out")
    if writable and not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirError(f"{out}: {existing} is not writable by this user; choose another --out")


def stamp(out: Path) -> Stamp:
    """Which run `out` holds now: its config.json's inode, size and modification time (None
    without one). A run claimed there since a check has another stamp."""
    try:
        st = (out / "config.json").stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def check(
    cfg: Config, out: Path, resume: bool, overwrite: bool, seeds: list[int] | None = None
) -> Stamp:
    """Raise RunDirError unless `out` may be used for this run (`seeds`: a run of those seeds in
    one program); reads only (so that every process of a multi-host run can check before one of
    them writes). Returns the `stamp` of what it checked, for `create`."""
    cfg_file, seeds_file = out / "config.json", out / "seeds.json"
    usable_folder(out, writable=not resume)
    _not_under_way(out)
    if resume:
        if not cfg_file.exists():
            raise RunDirError(f"--resume: {out} holds no run (no config.json)")
        try:
            saved = Config.from_dict(json.loads(cfg_file.read_text()))
        except (ValueError, TypeError) as e:
            raise RunDirError(f"--resume: {cfg_file} is not a valid gr_jax config: {e}") from e
        d = diff(saved, cfg)
        if d:
            lines = ", ".join(f"{k}: saved {a!r} vs now {b!r}" for k, (a, b) in d.items())
            raise RunDirError(f"--resume: {out} was run with another config ({lines})")
        saved_seeds = json.loads(seeds_file.read_text()) if seeds_file.exists() else None
        if seeds is None and saved_seeds is not None:
            raise RunDirError(
                f"--resume: {out} holds seeds {saved_seeds} run in one program; resume it "
                f"with those --seeds (`gr-jax run --resume --out {out}` reads them)"
            )
        if seeds is not None and saved_seeds is None:
            raise RunDirError(
                f"--resume: {out} holds a run of one seed, not of seeds in one program; "
                f"resume it without --seeds"
            )
        if seeds is not None and saved_seeds != seeds:
            raise RunDirError(f"--resume: {out} was run with seeds {saved_seeds}, not {seeds}")
        return stamp(out)
    if out.exists() and any(e.name != LOCK for e in out.iterdir()):
        if not overwrite:
            if not cfg_file.exists() and _is_run_dir(out):  # seeds.json or temporaries only
                raise RunDirError(
                    f"{out} holds a run cut short before it started (no config.json); pass "
                    f"--overwrite to start it again"
                )
            raise RunDirError(
                f"{out} already holds files; pass --resume to continue that run or "
                f"--overwrite to replace it"
            )
        here = Path.cwd().resolve()
        if not _is_run_dir(out) or here == out.resolve() or out.resolve() in here.parents:
            raise RunDirError(
                f"--overwrite: {out} is not a gr_jax run directory (a config.json and only the "
                f"files a run writes), or it holds the working directory, so it is not deleted; "
                f"choose another --out"
            )
    return stamp(out)


def create(
    cfg: Config,
    out: Path,
    resume: bool,
    overwrite: bool,
    seeds: list[int] | None = None,
    checked: Stamp = None,
) -> Claim:
    """After `check` (`checked`: the stamp it returned): claim `out` (`Claim`: hold it while the
    run goes on, then release it); for a new run, empty it (with `overwrite`, only if it still
    holds the run checked; its lock stays) and write its seeds.json (seeds in one program), then
    its config.json, refusing if another process has claimed the folder since."""
    out.mkdir(parents=True, exist_ok=True)
    claim = Claim(out)
    try:
        if not resume:
            _start(cfg, out, overwrite, seeds, checked)
    except BaseException:
        claim.release()
        raise
    return claim


def _start(
    cfg: Config, out: Path, overwrite: bool, seeds: list[int] | None, checked: Stamp
) -> None:
    if overwrite and any(e.name != LOCK for e in out.iterdir()):
        if not _is_run_dir(out) or stamp(out) != checked:
            raise RunDirError(
                f"--overwrite: {out} changed since it was checked (another run may have started "
                f"there); not deleted"
            )
        # config.json last: an overwrite cut short still leaves a run directory
        for entry in sorted(out.iterdir(), key=lambda e: e.name == "config.json"):
            if entry.name == LOCK:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    if seeds is not None:
        write_json(out / "seeds.json", seeds, exclusive=True)
    try:
        write_text(out / "config.json", cfg.to_json(), exclusive=True)
    except BaseException:
        if seeds is not None:  # ours, written just now: the folder is another process's
            (out / "seeds.json").unlink(missing_ok=True)
        raise


def finished_results(cfg: Config, out: Path) -> dict[str, Any] | None:
    """The results.json of a finished run of `cfg` in `out` (checked by `check`), else None
    (also for a file cut short by a kill: the run then writes it again from its checkpoint)."""
    results = read_json(out / "results.json")
    if isinstance(results, dict) and results.get("tasks_done") == cfg.num_tasks:
        return results
    return None
