"""``jaxnn train --out``: a path that cannot become a directory is one line, exit 2,
nothing written (a parent of --out that is a regular file once ended in a traceback)."""

import os

import pytest

from jaxnn.cli.common import UsageError, check_directory_path
from tests.test_cli import SMALL, run, snapshot


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("file", "--out {tmp}/file is a file, not a directory"),
        ("file/run", "--out {tmp}/file/run: {tmp}/file is a file, not a directory"),
        ("file/a/b", "--out {tmp}/file/a/b: {tmp}/file is a file, not a directory"),
        ("dangling/run", "--out {tmp}/dangling/run: {tmp}/dangling is not a directory"),
    ],
)
def test_check_directory_path_names_the_part_in_the_way(tmp_path, out, message):
    (tmp_path / "file").write_text("")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    with pytest.raises(UsageError) as e:
        check_directory_path("--out", str(tmp_path / out))
    assert str(e.value) == message.replace("{tmp}", str(tmp_path))


@pytest.mark.parametrize("out", ["{tmp}", "{tmp}/new/run", "run", "./a/../b"])
def test_check_directory_path_accepts_a_directory_or_a_new_path(tmp_path, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    check_directory_path("--out", out.replace("{tmp}", str(tmp_path)))
    assert os.listdir(tmp_path) == []  # creates nothing


def test_train_out_under_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    before = snapshot(tmp_path)
    status, stdout, stderr = run("train", *SMALL, "--epochs", "1", "--out", f"{tmp_path}/file/run")
    assert (status, stdout) == (2, "")
    assert (
        stderr
        == f"jaxnn: error: --out {tmp_path}/file/run: {tmp_path}/file is a file, not a directory\n"
    )
    assert snapshot(tmp_path) == before
