"""The F3OCUS front solvers behind one API: `solve(problem, rng | seed, settings) -> Front`.

nsga2 (pymoo), abc, aco, sa, mopso (numpy; pymoo has none of them), `flow` (the exact supported points, min-cost
flow) and `exact` (the whole exact front: flow plus ε-constraint MILPs in the gaps; the reference).
"""

from f3ocus.selection.solvers.annealing import AnnealingSolver
from f3ocus.selection.solvers.ant_colony import AntColonySolver
from f3ocus.selection.solvers.bee_colony import BeeColonySolver
from f3ocus.selection.solvers.binary_pso import BinaryPsoSolver
from f3ocus.selection.solvers.epsilon_constraint import ExactSolver
from f3ocus.selection.solvers.min_cost_flow import MinCostFlowSolver, solve_weighted
from f3ocus.selection.solvers.pymoo_moea import Nsga2Solver

SOLVERS: dict[str, type] = {cls.name: cls for cls in (Nsga2Solver, BeeColonySolver, AntColonySolver, AnnealingSolver,
                                                     BinaryPsoSolver, MinCostFlowSolver, ExactSolver)}


def build_solver(name: str):
    """Instantiate the solver registered as `name` with its default hyper-parameters.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    try:
        return SOLVERS[name]()
    except KeyError:
        raise ValueError(f"unknown solver {name!r}; known: {', '.join(SOLVERS)}") from None


__all__ = ["SOLVERS", "build_solver", "Nsga2Solver", "BeeColonySolver", "AntColonySolver", "AnnealingSolver",
           "BinaryPsoSolver", "MinCostFlowSolver", "ExactSolver", "solve_weighted"]
