"""Run directories: what may be used, replaced or resumed, and files never left half-written."""

import errno
import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gr_jax import rundir
from gr_jax.rundir import RunDirError

from .conftest import REPO, prepare, tiny_config


def test_run_dir_is_never_overwritten_silently(tmp_path):
    cfg = tiny_config()
    out = tmp_path / "r"
    prepare(cfg, out, resume=False, overwrite=False)
    with pytest.raises(RunDirError, match="--overwrite"):
        prepare(cfg, out, resume=False, overwrite=False)
    with pytest.raises(RunDirError, match="n_gen: saved 256 vs now 512"):
        prepare(tiny_config(n_gen=512), out, resume=True, overwrite=False)
    with pytest.raises(RunDirError, match="holds no run"):
        prepare(cfg, tmp_path / "empty", resume=True, overwrite=False)
    prepare(tiny_config(n_gen=512), out, resume=False, overwrite=True)
    assert '"n_gen": 512' in (out / "config.json").read_text()


def test_overwrite_deletes_only_a_run_directory(tmp_path, monkeypatch):
    cfg = tiny_config()
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me")
    with pytest.raises(RunDirError, match="not a gr_jax run directory"):
        prepare(cfg, notes, resume=False, overwrite=True)
    assert (notes / "todo.txt").exists()
    run = tmp_path / "run"
    prepare(cfg, run, resume=False, overwrite=False)
    monkeypatch.chdir(run)  # a run directory that is the working directory stays too
    with pytest.raises(RunDirError, match="not a gr_jax run directory"):
        prepare(cfg, Path("."), resume=False, overwrite=True)
    assert (run / "config.json").exists()


def test_runs_of_one_seed_and_of_seeds_in_one_program_are_told_apart(tmp_path):
    cfg = tiny_config()
    single, several = tmp_path / "single", tmp_path / "several"
    prepare(cfg, single, resume=False, overwrite=False)
    prepare(cfg, several, resume=False, overwrite=False)
    (several / "seeds.json").write_text("[0, 1]")
    with pytest.raises(RunDirError, match="run of one seed"):
        rundir.check(cfg, single, resume=True, overwrite=False, seeds=[0, 1])
    with pytest.raises(RunDirError, match=r"seeds \[0, 1\] run in one program"):
        rundir.check(cfg, several, resume=True, overwrite=False)
    with pytest.raises(RunDirError, match=r"with seeds \[0, 1\], not \[0, 2\]"):
        rundir.check(cfg, several, resume=True, overwrite=False, seeds=[0, 2])
    rundir.check(cfg, several, resume=True, overwrite=False, seeds=[0, 1])
    rundir.check(cfg, single, resume=True, overwrite=False)


def test_overwrite_refuses_a_folder_with_other_files_or_a_foreign_config(tmp_path, monkeypatch):
    cfg = tiny_config()
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.json").write_text("{}")  # a valid gr_jax config, but not alone
    (project / "main.py").write_text("print('mine')")
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"model": "resnet"}')
    for folder in (project, other):
        with pytest.raises(RunDirError, match="not a gr_jax run directory"):
            prepare(cfg, folder, overwrite=True)
    assert (project / "main.py").exists() and (other / "config.json").read_text().startswith("{")
    inside = tmp_path / "run"  # a run directory that holds the working directory stays too
    prepare(cfg, inside)
    (inside / "checkpoints" / "1").mkdir(parents=True)
    monkeypatch.chdir(inside / "checkpoints" / "1")
    with pytest.raises(RunDirError, match="holds the working directory"):
        prepare(cfg, inside, overwrite=True)
    monkeypatch.chdir(tmp_path)
    for foreign in ("notes.tmp/thesis.tex", "seed=notes/todo.txt", "seed=0/todo.txt"):
        (inside / foreign).parent.mkdir()
        (inside / foreign).write_text("mine")
        with pytest.raises(RunDirError, match="not a gr_jax run directory"):
            prepare(cfg, inside, overwrite=True)
        (inside / foreign).unlink()
        (inside / foreign).parent.rmdir()
    prepare(tiny_config(n_gen=512), inside, overwrite=True)  # a run directory is replaced
    assert sorted(p.name for p in inside.iterdir()) == [".lock", "config.json"]


def test_two_overwrites_of_one_run_replace_it_once(tmp_path):
    cfg = tiny_config()
    out = tmp_path / "run"
    prepare(cfg, out)  # an earlier run, which two processes now start to replace
    first = rundir.check(cfg, out, resume=False, overwrite=True)
    second = rundir.check(cfg, out, resume=False, overwrite=True)
    time.sleep(0.1)  # the data loading between check and create (the files' times differ)
    rundir.create(cfg, out, resume=False, overwrite=True, checked=first)
    (out / "checkpoints").mkdir()  # the first one's run under way
    with pytest.raises(RunDirError, match="changed since it was checked"):
        rundir.create(cfg, out, resume=False, overwrite=True, checked=second)
    assert sorted(p.name for p in out.iterdir()) == [".lock", "checkpoints", "config.json"]
    assert rundir.stamp(out) != second


def test_a_folder_claimed_by_another_process_since_the_check_is_refused(tmp_path, monkeypatch):
    cfg = tiny_config()
    out = tmp_path / "run"
    rundir.check(cfg, out, resume=False, overwrite=False)  # both processes find it free
    rundir.create(cfg, out, resume=False, overwrite=False, seeds=[0, 1])  # the first claims it
    with pytest.raises(RunDirError, match="another process uses"):
        rundir.create(cfg, out, resume=False, overwrite=False, seeds=[2, 3])
    assert json.loads((out / "seeds.json").read_text()) == [0, 1]  # the first's, untouched
    # a single-seed run that wins the race to config.json: the loser's seeds.json goes again
    other = tmp_path / "other"
    real_link = os.link

    def racer_first(src, dst):
        if Path(dst).name == "config.json":
            Path(dst).write_text("{}")
        return real_link(src, dst)

    monkeypatch.setattr(os, "link", racer_first)
    with pytest.raises(RunDirError, match="another process uses"):
        rundir.create(cfg, other, resume=False, overwrite=False, seeds=[2, 3])
    assert sorted(p.name for p in other.iterdir()) == [".lock", "config.json"]
    assert (other / "config.json").read_text() == "{}"


def test_without_hard_links_a_file_is_still_claimed_once(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    rundir.write_text(tmp_path / "config.json", "first", exclusive=True)
    with pytest.raises(RunDirError, match="appeared meanwhile"):
        rundir.write_text(tmp_path / "config.json", "second", exclusive=True)
    assert (tmp_path / "config.json").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_a_kill_during_a_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    f = tmp_path / "results.json"
    rundir.write_json(f, {"tasks_done": 1})

    def killed(src, dst):
        raise KeyboardInterrupt  # the process stops between writing and renaming

    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.fstat(fd).st_size))
    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        rundir.write_json(f, {"tasks_done": 2, "much": "more" * 1000})
    assert json.loads(f.read_text()) == {"tasks_done": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
    assert synced and synced[0] > 4000  # the new content reached the disk before any rename


def test_a_folder_cut_short_before_its_config_says_so_and_can_be_overwritten(tmp_path):
    cfg = tiny_config()
    for leftover in ("seeds.json", ".config.json.0123456789abcdef0123456789abcdef.tmp"):
        out = tmp_path / leftover.strip(".")
        out.mkdir()
        (out / leftover).write_text("[0, 1]")
        with pytest.raises(RunDirError, match="cut short before it started"):
            prepare(cfg, out)
        prepare(cfg, out, overwrite=True)
        assert sorted(p.name for p in out.iterdir()) == [".lock", "config.json"]


def test_results_without_a_config_are_never_deleted(tmp_path):
    """A finished --seeds run whose config.json was lost is no run "cut short": its results
    stay, with --overwrite too."""
    cfg = tiny_config()
    out = tmp_path / "seeds"
    (out / "seed=0").mkdir(parents=True)
    (out / "seed=0" / "results.json").write_text("{}")
    (out / "summary.json").write_text("{}")
    with pytest.raises(RunDirError, match="already holds files"):
        prepare(cfg, out)
    with pytest.raises(RunDirError, match="not a gr_jax run directory"):
        prepare(cfg, out, overwrite=True)
    assert (out / "seed=0" / "results.json").exists() and (out / "summary.json").exists()


def test_files_are_replaced_whole_and_a_cut_results_file_reads_as_unfinished(tmp_path):
    cfg = tiny_config()
    f = tmp_path / "results.json"
    rundir.write_json(f, {"tasks_done": cfg.num_tasks, "acc": 0.5})
    assert rundir.finished_results(cfg, tmp_path) == {"tasks_done": 2, "acc": 0.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # no temporary left
    f.write_text(f.read_text()[:10])  # what a kill in a plain write could leave
    assert rundir.read_json(f) is None and rundir.finished_results(cfg, tmp_path) is None
    rundir.write_json(f, {"tasks_done": 1})
    assert rundir.finished_results(cfg, tmp_path) is None  # a run not finished
    assert json.loads(f.read_text()) == {"tasks_done": 1}


CLAIM_AND_WAIT = """
import sys, time
from pathlib import Path
from gr_jax import rundir
from tests.conftest import tiny_config
claim = rundir.create(tiny_config(), Path(sys.argv[1]), resume=False, overwrite=False)
print("claimed", flush=True)
time.sleep(120)
"""


def test_a_run_under_way_is_neither_replaced_nor_resumed_until_its_process_ends(tmp_path):
    cfg = tiny_config()
    out = tmp_path / "run"
    claim = rundir.create(cfg, out, resume=False, overwrite=False)  # a run going on
    for resume, overwrite in ((True, False), (False, True)):
        with pytest.raises(RunDirError, match="a run is under way there"):
            rundir.check(cfg, out, resume, overwrite)
        with pytest.raises(RunDirError, match="a run is under way there"):
            rundir.create(cfg, out, resume, overwrite, checked=rundir.stamp(out))
    assert sorted(p.name for p in out.iterdir()) == [".lock", "config.json"]
    claim.release()
    rundir.check(cfg, out, resume=True, overwrite=False)
    # another process's claim, let go however that process ends (here SIGKILL)
    other = tmp_path / "other"
    holder = subprocess.Popen(
        [sys.executable, "-c", CLAIM_AND_WAIT, str(other)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "claimed"
        with pytest.raises(RunDirError, match="a run is under way there"):
            rundir.check(cfg, other, resume=False, overwrite=True)
    finally:
        holder.kill()
        holder.wait()
    rundir.check(cfg, other, resume=False, overwrite=True)
    rundir.create(cfg, other, resume=False, overwrite=True, checked=rundir.stamp(other)).release()


def test_a_lock_file_alone_is_no_run_and_an_overwrite_unlinks_links(tmp_path):
    cfg = tiny_config()
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").touch()  # e.g. after `rm -r run/*`, which leaves dotfiles
    prepare(cfg, out)  # a fresh run, no --overwrite needed
    kept = tmp_path / "elsewhere"
    kept.mkdir()
    (kept / "1").mkdir()
    (out / "checkpoints").symlink_to(kept, target_is_directory=True)
    prepare(tiny_config(n_gen=512), out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [".lock", "config.json"]
    assert (kept / "1").is_dir()  # the link went, not what it points to


def test_a_claim_waits_out_another_process_brief_look_at_the_lock(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    look = open(out / ".lock", "a")  # noqa: SIM115 - what check's probe does, for 30 ms
    fcntl.flock(look, fcntl.LOCK_SH)
    threading.Timer(0.03, look.close).start()
    rundir.Claim(out).release()
