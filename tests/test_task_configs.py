"""The six task settings (configs/tasks/): offline variants validate; real variants build through the real loaders on
tiny datasets written in each source's real layout (their placeholder paths swapped for those folders)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from f3ocus.config import load_config
from f3ocus.config.schema import ExperimentConfig
from f3ocus.config.validate import check_budgets, expected_num_clients, validate
from f3ocus.data.prepare import prepare_federated_data
from f3ocus.data.schema import column_values
from tests.unit.data.layouts import write_medmnist, write_mimic, write_nih, write_slake, write_vqa_rad, write_vqamed

TASKS_DIR = Path(__file__).resolve().parent.parent / "configs" / "tasks"
OFFLINE = sorted(path for path in TASKS_DIR.glob("t*.yaml") if not path.stem.endswith("_real"))
REAL = sorted(TASKS_DIR.glob("t*_real.yaml"))
SMALLEST_UNIT_COUNT = 6  # vilt and blip presets; llava and blip2 have 9


def test_six_settings_each_offline_and_real() -> None:
    assert [path.stem.split("_")[0] for path in OFFLINE] == ["t1", "t2", "t3", "t4", "t5", "t6"]
    assert [path.stem.removesuffix("_real") for path in REAL] == [path.stem for path in OFFLINE]


@pytest.mark.parametrize("path", OFFLINE + REAL, ids=lambda path: path.stem)
def test_budgets_are_heterogeneous_and_one_per_client(path: Path) -> None:
    cfg = load_config(path)
    budgets = cfg.federation.budgets
    assert isinstance(budgets, tuple) and len(set(budgets)) > 1
    assert len(budgets) == expected_num_clients(cfg)
    assert max(budgets) <= SMALLEST_UNIT_COUNT


@pytest.mark.parametrize("path", OFFLINE, ids=lambda path: path.stem)
def test_offline_configs_validate_for_the_smallest_family(path: Path) -> None:
    validate(load_config(path, ["model.family=vilt"]))


@pytest.fixture(scope="module")
def real_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One tiny folder per real source, in its real layout."""
    root = tmp_path_factory.mktemp("real")
    flags = ("organamnist", "breastmnist", "dermamnist", "retinamnist", "pathmnist", "octmnist", "pneumoniamnist",
             "bloodmnist", "chestmnist", "tissuemnist")
    folders = {"slake": write_slake(root / "Slake1.0"), "vqa_rad": write_vqa_rad(root / "vqa-rad"),
               "medmnist": write_medmnist(root / "medmnist", flags), "open-i": write_nih(root / "open-i"),
               "mimic-cxr-jpg": write_mimic(root / "mimic-cxr-jpg")}
    for year in (2019, 2020, 2021):
        folders[f"vqa-med/{year}"] = write_vqamed(root / f"vqa-med-{year}", year)
    return {name: str(folder) for name, folder in folders.items()}


def _local(cfg: ExperimentConfig, folders: dict[str, str]) -> ExperimentConfig:
    """The config with every `/data/<name>` placeholder (and hub-named source) pointed at a tiny local folder."""
    def swap(task: str, path: str | None) -> str:
        return folders[path.removeprefix("/data/")] if path is not None else folders[task]

    data = cfg.data
    if data.sources:
        sources = tuple(dataclasses.replace(source, path=swap(source.task, source.path)) for source in data.sources)
        data = dataclasses.replace(data, sources=sources)
    else:
        data = dataclasses.replace(data, path=swap(data.task, data.path))
    return dataclasses.replace(cfg, data=data)


@pytest.mark.parametrize("path", REAL, ids=lambda path: path.stem)
def test_real_configs_build_through_the_real_loaders(path: Path, real_data: dict[str, str], tmp_path: Path) -> None:
    # Prepare
    cfg = _local(load_config(path, ["model.family=vilt"]), real_data)
    validate(cfg)
    # Execute
    store = prepare_federated_data(cfg.data, tmp_path / "store", seed=0)
    # Assert
    assert check_budgets(cfg, num_units=SMALLEST_UNIT_COUNT, num_clients=len(store.clients)) == cfg.federation.budgets
    kinds = set(column_values(store.dataset, "question_type"))
    if cfg.name.startswith(("t4", "t5")):
        assert kinds == {"multilabel"}
    if cfg.name.startswith("t6"):
        assert "multilabel" in kinds and len(kinds) > 1
    if cfg.name.startswith("t5"):
        assert store.skipped_rows == 1  # the Lung-Opacity-only row, under on_bad_row: skip
