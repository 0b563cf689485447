"""The output-directory rule: edgec replaces only what it wrote, and never deletes a user's file.

Every case of issue 12: a directory of the user's files (`-o ~/thesis`), `-o .`, `-o /`, the
model's and the plan's own directory, symlinks, files added inside an old output, `--force`,
`--dump-ir` and the CMake build tree of `edgec build`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

from edgec.cli import app
from edgec.compiler.diagnostics import UsageError
from graphs import chain

runner = CliRunner()
PLAN = "device a { cores 1 }\ndevice b { cores 1 }\nplace n0 .. n1 on a\nplace * on b\n"
ONE_STAGE = "device a { cores 1 }\nplace * on a\n"


def edgec(*args) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture
def inputs(tmp_path) -> tuple[Path, Path]:
    """A model and a plan in a directory of their own."""
    here = tmp_path / "work"
    here.mkdir()
    onnx.save(chain(4), here / "m.onnx")
    (here / "p.edge").write_text(PLAN)
    return here / "m.onnx", here / "p.edge"


def user_files(directory: Path) -> dict[str, bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    files = {"chapter1.tex": b"\\section{One}", "data/results.csv": b"1,2,3\n", ".hidden": b"secret"}
    for name, data in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)
    return files


def assert_intact(directory: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        assert (directory / name).read_bytes() == data, name


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith((".edgec-", f".{directory.name}."))]


def test_a_directory_of_user_files_is_refused_and_left_alone(inputs, tmp_path):
    model, plan = inputs
    thesis = tmp_path / "thesis"
    files = user_files(thesis)
    rc, out = edgec("compile", model, "-p", plan, "-o", thesis)
    assert rc == 2, out
    assert "is not empty and is not an earlier edgec output" in out and "--force" in out
    assert "chapter1.tex" in out and "Traceback" not in out
    assert_intact(thesis, files)
    assert not (thesis / "manifest.json").exists() and leftovers(thesis) == []


def test_force_writes_beside_user_files_and_keeps_them_on_every_recompile(inputs, tmp_path):
    model, plan = inputs
    thesis = tmp_path / "thesis"
    files = user_files(thesis)
    rc, out = edgec("compile", model, "-p", plan, "-o", thesis, "--force")
    assert rc == 0, out
    assert "3 file(s) edgec did not write; they were kept" in out
    assert_intact(thesis, files)
    assert len(json.loads((thesis / "manifest.json").read_text())["stages"]) == 2
    plan.write_text(ONE_STAGE)
    rc, out = edgec("compile", model, "-p", plan, "-o", thesis)
    assert rc == 2 and "is an earlier edgec output, but it also holds 3 file(s)" in out, out
    rc, out = edgec("compile", model, "-p", plan, "-o", thesis, "--force")
    assert rc == 0, out
    assert_intact(thesis, files)
    assert sorted(p.name for p in (thesis / "devices").iterdir()) == ["a"]
    assert leftovers(thesis) == []


def test_an_earlier_output_is_replaced_and_its_stale_files_removed(inputs, tmp_path):
    model, plan = inputs
    out_dir = tmp_path / "out"
    assert edgec("compile", model, "-p", plan, "-o", out_dir)[0] == 0
    assert (out_dir / "devices" / "b").is_dir()
    inode = out_dir.stat().st_ino
    plan.write_text(ONE_STAGE)
    rc, out = edgec("compile", model, "-p", plan, "-o", out_dir)
    assert rc == 0, out
    assert sorted(p.name for p in out_dir.iterdir()) == ["comm.json", "devices", "manifest.json", "rankfile"]
    assert sorted(p.name for p in (out_dir / "devices").iterdir()) == ["a"]
    assert out_dir.stat().st_ino == inode
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_a_user_file_added_inside_an_old_output_is_not_deleted(inputs, tmp_path):
    model, plan = inputs
    out_dir = tmp_path / "out"
    assert edgec("compile", model, "-p", plan, "-o", out_dir)[0] == 0
    (out_dir / "devices" / "a" / "notes.txt").write_text("mine")
    rc, out = edgec("compile", model, "-p", plan, "-o", out_dir)
    assert rc == 2 and "'devices/a/notes.txt'" in out and "--force" in out, out
    plan.write_text(ONE_STAGE)
    rc, out = edgec("compile", model, "-p", plan, "-o", out_dir, "--force")
    assert rc == 0, out
    assert (out_dir / "devices" / "a" / "notes.txt").read_text() == "mine"
    assert not (out_dir / "devices" / "b").exists()


def test_an_empty_directory_is_used_in_place(inputs, tmp_path):
    model, plan = inputs
    empty = tmp_path / "empty"
    empty.mkdir()
    inode = empty.stat().st_ino
    rc, out = edgec("compile", model, "-p", plan, "-o", empty)
    assert rc == 0, out
    assert empty.stat().st_ino == inode and (empty / "manifest.json").is_file() and leftovers(empty) == []


def test_dot_in_the_models_directory_is_refused_and_force_keeps_model_and_plan(inputs, monkeypatch):
    model, plan = inputs
    monkeypatch.chdir(model.parent)
    before = {p: p.read_bytes() for p in (model, plan)}
    rc, out = edgec("compile", "m.onnx", "-p", "p.edge", "-o", ".")
    assert rc == 2 and "'.' is not empty" in out and "'m.onnx'" in out, out
    rc, out = edgec("compile", "m.onnx", "-p", "p.edge", "-o", ".", "--force")
    assert rc == 0, out
    assert {p: p.read_bytes() for p in (model, plan)} == before
    assert Path("manifest.json").is_file() and Path.cwd() == model.parent
    rc, out = edgec("compile", "m.onnx", "-p", "p.edge", "-o", ".", "--force")
    assert rc == 0, out
    assert {p: p.read_bytes() for p in (model, plan)} == before


def test_the_model_and_the_plan_directories_are_refused(tmp_path):
    models, plans = tmp_path / "models", tmp_path / "plans"
    models.mkdir(), plans.mkdir()
    onnx.save(chain(4), models / "m.onnx")
    (plans / "p.edge").write_text(PLAN)
    for target in (models, plans):
        rc, out = edgec("compile", models / "m.onnx", "-p", plans / "p.edge", "-o", target)
        assert rc == 2 and "is not empty and is not an earlier edgec output" in out, out
    assert sorted(p.name for p in models.iterdir()) == ["m.onnx"]
    assert sorted(p.name for p in plans.iterdir()) == ["p.edge"]


def test_the_filesystem_root_is_refused_even_with_force(inputs):
    model, plan = inputs
    for extra in ([], ["--force"]):
        rc, out = edgec("compile", model, "-p", plan, "-o", "/", *extra)
        assert rc == 2 and "refusing to write into the filesystem root" in out, out
    assert not Path("/manifest.json").exists() and not Path("/devices").exists()


def test_force_never_overwrites_a_user_file_edgec_would_write(inputs, tmp_path):
    model, plan = inputs
    target = tmp_path / "t"
    target.mkdir()
    (target / "rankfile").write_text("my own rankfile")
    rc, out = edgec("compile", model, "-p", plan, "-o", target, "--force")
    assert rc == 2 and "even with --force: 'rankfile' exists there" in out, out
    assert (target / "rankfile").read_text() == "my own rankfile"
    assert sorted(p.name for p in target.iterdir()) == ["rankfile"]


def test_symlinks(inputs, tmp_path):
    model, plan = inputs
    real = tmp_path / "real"
    assert edgec("compile", model, "-p", plan, "-o", real)[0] == 0
    link = tmp_path / "link"
    link.symlink_to(real)
    plan.write_text(ONE_STAGE)
    rc, out = edgec("compile", model, "-p", plan, "-o", link)
    assert rc == 0, out
    assert link.is_symlink() and sorted(p.name for p in (real / "devices").iterdir()) == ["a"]

    mine = tmp_path / "mine"
    files = user_files(mine)
    (tmp_path / "to-mine").symlink_to(mine)
    rc, out = edgec("compile", model, "-p", plan, "-o", tmp_path / "to-mine")
    assert rc == 2 and "--force" in out, out
    assert_intact(mine, files)

    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    rc, out = edgec("compile", model, "-p", plan, "-o", tmp_path / "dangling")
    assert rc == 2 and "symbolic link" in out and "does not exist" in out, out
    assert not (tmp_path / "nowhere").exists()

    (tmp_path / "via").symlink_to(tmp_path / "work")
    rc, out = edgec("compile", model, "-p", plan, "-o", tmp_path / "via" / "out")
    assert rc == 0 and (tmp_path / "work" / "out" / "manifest.json").is_file(), out


def test_a_symlink_inside_an_output_is_not_followed_or_deleted(inputs, tmp_path):
    model, plan = inputs
    out_dir = tmp_path / "out"
    assert edgec("compile", model, "-p", plan, "-o", out_dir)[0] == 0
    mine = tmp_path / "mine"
    files = user_files(mine)
    (out_dir / "devices" / "shortcut").symlink_to(mine)
    rc, out = edgec("compile", model, "-p", plan, "-o", out_dir, "--force")
    assert rc == 0, out
    assert (out_dir / "devices" / "shortcut").is_symlink()
    assert_intact(mine, files)


def test_dump_ir_follows_the_same_rule(inputs, tmp_path):
    model, plan = inputs
    dump = tmp_path / "ir"
    files = user_files(dump)
    rc, out = edgec("compile", model, "-p", plan, "-o", tmp_path / "o", "--dump-ir", dump)
    assert rc == 2 and "is not an earlier --dump-ir directory" in out, out
    assert_intact(dump, files) and not (tmp_path / "o").exists()

    fresh = tmp_path / "ir2"
    assert edgec("compile", model, "-p", plan, "-o", tmp_path / "o", "--dump-ir", fresh)[0] == 0
    first = sorted(p.name for p in fresh.iterdir())
    assert first and all(name.endswith(".txt") for name in first)
    (fresh / "99-stale-pass.txt").write_text((fresh / first[0]).read_text())
    rc, out = edgec("compile", model, "-p", plan, "-o", tmp_path / "o", "--dump-ir", fresh)
    assert rc == 0, out
    assert sorted(p.name for p in fresh.iterdir()) == first

    rc, out = edgec("compile", model, "-p", plan, "-o", tmp_path / "o", "--dump-ir", tmp_path / "o" / "ir")
    assert rc == 2 and "must be separate directories" in out, out


def test_a_failed_compile_leaves_an_existing_output_as_it_was(inputs, tmp_path):
    model, plan = inputs
    out_dir = tmp_path / "out"
    assert edgec("compile", model, "-p", plan, "-o", out_dir)[0] == 0
    before = {p.relative_to(out_dir): p.read_bytes() for p in out_dir.rglob("*") if p.is_file()}
    plan.write_text("device a { cores 1 }\nplace nope on a\n")
    rc, out = edgec("compile", model, "-p", plan, "-o", out_dir)
    assert rc == 2 and "unknown node 'nope'" in out, out
    assert {p.relative_to(out_dir): p.read_bytes() for p in out_dir.rglob("*") if p.is_file()} == before


def test_build_directory_rule(tmp_path):
    from edgec.backends.output_dir import BUILD_MARKER, claim_build_directory

    source = tmp_path / "out" / "cpp"
    source.mkdir(parents=True)
    build = tmp_path / "out" / "build"
    files = user_files(build)
    with pytest.raises(UsageError, match="is not an edgec build") as refused:
        claim_build_directory(build, source)
    assert "--force" in refused.value.format()
    notes: list[str] = []
    claim_build_directory(build, source, force=True, progress=notes.append)
    assert notes and "kept beside the build" in notes[0]
    assert_intact(build, files)
    assert sorted(json.loads((build / BUILD_MARKER).read_text())["kept"]) == sorted(files)
    claim_build_directory(build, source)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "Makefile").write_text("all:\n")
    with pytest.raises(UsageError, match="even with --force: 'Makefile'"):
        claim_build_directory(tmp_path / "other", source, force=True)
    assert claim_build_directory(tmp_path / "new-build", source) == (tmp_path / "new-build").resolve()


def test_a_built_output_is_replaced_with_its_build_tree_but_kept_files_stay(inputs, tmp_path):
    from edgec.backends.output_dir import claim_build_directory, inspect_directory

    model, plan = inputs
    out_dir = tmp_path / "out"
    assert edgec("compile", model, "-p", plan, "-o", out_dir)[0] == 0
    build = out_dir / "build"
    build.mkdir()
    (build / "mine.txt").write_text("mine")
    claim_build_directory(build, out_dir / "cpp", force=True)
    (build / "CMakeFiles" / "pkgRedirects").mkdir(parents=True)
    (build / "CMakeCache.txt").write_text(f"CMAKE_HOME_DIRECTORY:INTERNAL={out_dir / 'cpp'}\n")
    contents = inspect_directory(out_dir)
    assert contents.earlier and contents.foreign == ["build/mine.txt"]
    assert "build/CMakeCache.txt" in contents.ours
    rc, out = edgec("compile", model, "-p", plan, "-o", out_dir, "--force")
    assert rc == 0, out
    assert sorted(p.relative_to(build).as_posix() for p in build.rglob("*")) == ["mine.txt"]


def test_build_refuses_a_user_directory_at_out_build(inputs, tmp_path):
    model, plan = inputs
    out_dir = tmp_path / "out"
    assert edgec("compile", model, "-p", plan, "-o", out_dir)[0] == 0
    (out_dir / "cpp").mkdir()
    (out_dir / "cpp" / "CMakeLists.txt").write_text("project(x)\n")
    files = user_files(out_dir / "build")
    rc, out = edgec("build", out_dir)
    assert rc == 2 and "is not an edgec build" in out and "--force" in out, out
    assert_intact(out_dir / "build", files)
    assert sorted(os.listdir(out_dir / "build")) == [".hidden", "chapter1.tex", "data"]


def test_what_a_killed_compile_left_inside_is_cleaned_up_but_look_alikes_are_not(inputs, tmp_path):
    model, plan = inputs
    target = tmp_path / "t"
    (target / ".edgec-staging-abcd1234.tmp" / "devices").mkdir(parents=True)
    (target / ".edgec-staging-abcd1234.tmp" / "devices" / "half.onnx").write_bytes(b"half")
    rc, out = edgec("compile", model, "-p", plan, "-o", target)
    assert rc == 0, out
    assert leftovers(target) == [] and (target / "manifest.json").is_file()
    (target / ".edgec-staging-my-notes").mkdir()
    (target / ".edgec-staging-my-notes" / "n.txt").write_text("mine")
    rc, out = edgec("compile", model, "-p", plan, "-o", target)
    assert rc == 2 and ".edgec-staging-my-notes/n.txt" in out, out
