"""`f3ocus solve`: solve one F3OCUS selection problem offline from a score file and print / write the front.

    f3ocus solve --scores scores.json --budgets 2,3,1 --algorithm nsga2 [--seed 0] [--out front.json]

`--scores` is a JSON list of N lists of L floats, or a `.npy` (N, L) array. Rows are used as given (not
re-normalised). Bad input raises `ConfigError` naming the flag; `f3ocus.cli.main` turns it into one
`config error: ...` line on stderr and exit code 2. Start-up stays light: the solvers are imported by the
handler, and nothing here imports torch or transformers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from f3ocus.config.schema import ConfigError

ALGORITHMS = ("nsga2", "abc", "aco", "sa", "mopso", "flow", "exact")


def add_parsers(commands: Any) -> None:
    """Add `solve` to the `f3ocus` subcommands."""
    solve = commands.add_parser("solve", help="solve one F3OCUS layer-selection problem from a score file")
    solve.add_argument("--scores", required=True, help="JSON list of N lists of L floats, or an (N, L) .npy")
    solve.add_argument("--budgets", required=True, help="comma-separated per-client budgets b1,b2,...")
    solve.add_argument("--algorithm", choices=ALGORITHMS, default="nsga2")
    solve.add_argument("--seed", type=int, default=0)
    solve.add_argument("--out", help="write the JSON here instead of stdout")
    solve.add_argument("--pop-size", type=int, default=100)
    solve.add_argument("--max-evals", type=int, default=10000)
    solve.add_argument("--archive-size", type=int, default=100)
    solve.add_argument("--decision", choices=("knee", "pseudo_weights"), default="knee")
    solve.add_argument("--decision-weight", type=float, default=0.5, help="importance weight for pseudo_weights")
    solve.set_defaults(handler=_solve)


def _solve(args: argparse.Namespace) -> int:
    """Handler: read, solve, decide, write. Raises ConfigError on bad input."""
    from f3ocus.selection.archive import SolverSettings
    from f3ocus.selection.decide import choose
    from f3ocus.selection.objectives import to_objectives
    from f3ocus.selection.problem import SelectionProblem
    from f3ocus.selection.solvers import build_solver

    scores, budgets = read_scores(args.scores), parse_budgets(args.budgets)
    try:
        problem = SelectionProblem(scores, budgets)
    except ValueError as error:
        raise ConfigError("--budgets" if "budget" in str(error) else "--scores", str(error)) from None
    except (TypeError, OverflowError, RecursionError) as error:  # e.g. an integer beyond the float range
        raise ConfigError("--scores", f"scores must be an N x L matrix of finite numbers: {error}") from None
    try:
        settings = SolverSettings(args.pop_size, args.max_evals, args.archive_size)
    except ValueError as error:
        raise ConfigError("--pop-size", str(error)) from None
    if not 0.0 <= args.decision_weight <= 1.0:
        raise ConfigError("--decision-weight", f"must be in [0, 1], got {args.decision_weight}")
    start = time.perf_counter()
    front = build_solver(args.algorithm).solve(problem, np.random.default_rng(args.seed), settings)
    chosen = choose(front.F, args.decision, args.decision_weight)
    seconds = time.perf_counter() - start
    objectives, masks = to_objectives(front.F), front.masks(problem).astype(int)  # (P, 2), (P, N, L)
    report = {"algorithm": args.algorithm, "pareto_front": objectives.tolist(), "pareto_masks": masks.tolist(),
              "selected": {"index": chosen, "masks": masks[chosen].tolist(),
                           "importance": float(objectives[chosen, 0]), "variance": float(objectives[chosen, 1])},
              "n_evals": front.n_evals, "seconds": seconds}
    _write(json.dumps(report), args.out)
    return 0


def read_scores(path: str) -> Any:
    """The score matrix from a JSON or .npy file (shape and values validated later by SelectionProblem).

    Entries must be JSON numbers / a real numeric dtype: strings ("0.5"), booleans and complex numbers are
    rejected here rather than converted. Raises ConfigError.
    """
    try:
        if path.endswith(".npy"):
            scores = np.load(path, allow_pickle=False)
            if not isinstance(scores, np.ndarray):  # an .npz archive under a .npy name
                scores.close()
                raise ValueError("not a .npy array file (an .npz archive?)")
        else:
            scores = json.loads(Path(path).read_text())
    except (OSError, ValueError, EOFError) as error:  # ValueError: bad JSON / npy header, non-UTF-8 text
        raise ConfigError("--scores", f"cannot read {path}: {error}") from None
    except RecursionError:
        raise ConfigError("--scores", f"cannot read {path}: JSON nested too deeply") from None
    if isinstance(scores, np.ndarray):
        if scores.dtype.kind not in "iuf":
            raise ConfigError("--scores", f"{path}: scores must be a real numeric array, got dtype {scores.dtype}")
    else:
        _check_numbers(scores, path)
    return scores


def _check_numbers(scores: Any, path: str) -> None:
    """Raise ConfigError if a leaf of a JSON list-of-lists is not a number (str, bool, null, object)."""
    if not isinstance(scores, list):
        raise ConfigError("--scores", f"{path}: expected a JSON list of N lists of L numbers, got "
                                      f"{type(scores).__name__}")
    for i, row in enumerate(scores):
        for j, value in enumerate(row if isinstance(row, list) else [row]):
            if isinstance(value, bool) or not isinstance(value, (int, float, list)):
                where = f"client {i} unit {j}" if isinstance(row, list) else f"row {i}"
                raise ConfigError("--scores", f"{path}: {where} is {repr(value)[:40]}, not a number")


def parse_budgets(text: str) -> list[int]:
    """'2,3,1' -> [2, 3, 1]. Raises ConfigError on anything but comma-separated integers."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError("--budgets", f"expected comma-separated integers, got {text!r}") from None


def _write(text: str, out: str | None) -> None:
    if out is None:
        print(text)
        return
    try:
        Path(out).write_text(text + "\n")
    except (OSError, ValueError) as error:  # ValueError: an embedded NUL byte in the name
        raise ConfigError("--out", f"cannot write {out}: {error}") from None
