"""`f3ocus bench`: exit codes of a grid (all cells ok, some failed, interrupted)."""

from f3ocus.cli import bench as cli_bench

def test_an_interrupted_grid_exits_130_with_one_line(capsys):
    def interrupted():
        raise KeyboardInterrupt("interrupted: 3 cell(s) did not run; the same command resumes")
    assert cli_bench._resumable(interrupted) == 130
    assert capsys.readouterr().err.strip() == "interrupted: 3 cell(s) did not run; the same command resumes"
    assert cli_bench._resumable(lambda: {"failed": []}) == 0
    assert cli_bench._resumable(lambda: {"failed": ["a"]}) == 1
