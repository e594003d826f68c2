"""Input fuzzing (hypothesis): whatever a user types, `f3ocus validate` and `f3ocus solve` answer with exit code
0 or 2 and a one-line `config error: ...`, never another exception, a traceback or a hang.

Most examples run in-process (`f3ocus.cli.main(argv)`, `load_config` + `validate`); a few go through the real
CLI in a subprocess. Generated configs mix the schema's real keys (with plausible and wild values) with junk
keys, `defaults:` includes and `--set` overrides; generated score files mix ragged lists, NaN, negatives,
strings, wrong nesting, huge numbers and `.npy` arrays of every rank and dtype.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import signal
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from f3ocus.cli import main
from f3ocus.config.load import load_config
from f3ocus.config.schema import ConfigError, ExperimentConfig
from f3ocus.config.validate import validate
from f3ocus.tasks import TASK_NAMES

ROOT = Path(__file__).resolve().parents[2]
FUZZ = settings(deadline=None, database=None, print_blob=True,  # no .hypothesis/ in the repo; the blob replays
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
PER_EXAMPLE_SECONDS = 20  # a hang fails the example instead of stalling the suite


@contextlib.contextmanager
def _deadline(seconds: int = PER_EXAMPLE_SECONDS):
    def expired(*_):
        raise TimeoutError(f"no answer within {seconds} s (hang?)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _run_cli(argv: list[str]) -> tuple[int, str, str]:
    """`f3ocus.cli.main(argv)` in-process: (exit code, stdout, stderr); argparse's SystemExit is an exit code."""
    out, err = io.StringIO(), io.StringIO()
    with _deadline(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def _assert_user_error(code: int, err: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    assert err.startswith(("config error: ", "data error: ", "usage: ")), err
    if err.startswith(("config error: ", "data error: ")):
        assert err.count("\n") == 1, err


# ----------------------------------------------------------------------------------------------- config documents
def _schema(cls: type) -> dict[str, Any]:
    """Field name -> type hint, or -> nested schema for a section dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: _schema(hints[f.name]) if dataclasses.is_dataclass(hints[f.name]) else hints[f.name]
            for f in dataclasses.fields(cls)}


SCHEMA = _schema(ExperimentConfig)


def _dotted(schema: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for name, value in schema.items():
        keys.append(prefix + name)
        if isinstance(value, dict):
            keys.extend(_dotted(value, f"{prefix}{name}."))
    return keys


DOTTED_KEYS = _dotted(SCHEMA)
JUNK_KEYS = st.one_of(st.text(max_size=10), st.sampled_from(["budget", "modle", "defaults", "lr ", "Model", ""]),
                      st.integers(-2, 2), st.none(), st.booleans())
STRANGE_TEXT = st.sampled_from(["", " ", "~nosuchuser/x", "/" + "x" * 300, "x" * 5000, "a\x00b", "../..", "~",
                                "null", "[1, 2", "{a: 1}", "1e400", "-0", "ℵ", "\udc80".encode("utf-8", "surrogatepass")
                                .decode("utf-8", "replace")])
WILD = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300, max_value=10**400),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20), STRANGE_TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(JUNK_KEYS, inner, max_size=3)),
    max_leaves=8)


def _known_values() -> dict[str, list[Any]]:
    from f3ocus.importance.registry import SCORERS
    from f3ocus.models.registry import FAMILIES
    from f3ocus.selection.registry import SELECTORS

    return {
        "model.family": sorted(FAMILIES) + ["gpt5"],
        "model.checkpoint": ["scratch", "foundation", "/no/such/checkpoint", str(ROOT / "configs"), "not/a-hub-id"],
        "model.cache_dir": [None, "/no/such/cache"],
        "data.task": list(TASK_NAMES) + ["mimic"],
        "data.path": [None, "/no/such/folder", str(ROOT / "configs")],
        "data.modalities": [None, ["pathmnist", "dermamnist", "bloodmnist"], ["nosuchmnist"], []],
        "data.partition.by": ["modality", "source", "nope"],
        "selection.method": sorted(SELECTORS) + ["best"],
        "selection.scorer": sorted(SCORERS) + ["magic"],
        "selection.solver": ["nsga2", "flow", "sa", "nope"],
        "federation.budgets": [1, 2, 3, [1, 2, 3], [1, 99, 1], [], [0], 10**30],
    }


KNOWN = _known_values()


def _plausible(hint: Any, key: str) -> st.SearchStrategy:
    """Values of the field's own type (often valid), plus hand-picked valid / invalid values for some fields."""
    if key in KNOWN:
        return st.sampled_from(KNOWN[key])
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*[_plausible(arg, key) for arg in args])
    if origin is tuple:
        return st.lists(_plausible(args[0], key), max_size=4)
    if hint is type(None):
        return st.none()
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.one_of(st.integers(-3, 300), st.just(10**400))
    if hint is float:
        return st.one_of(st.floats(-2, 2), st.floats(allow_nan=True, allow_infinity=True), st.integers(-2, 10),
                         st.just(10**400))
    return st.one_of(st.text(max_size=12), STRANGE_TEXT)


def _section(schema: dict[str, Any], prefix: str) -> st.SearchStrategy:
    """A mapping of some of the section's keys (plausible or wild values) and maybe junk keys."""
    pairs = [st.tuples(st.just(name), _section(sub, f"{prefix}{name}.") if isinstance(sub, dict)
                       else _value(sub, prefix + name)) for name, sub in schema.items()]
    junk = st.tuples(JUNK_KEYS, WILD)
    body = st.lists(st.one_of(*pairs, junk) if prefix else st.one_of(*pairs), max_size=5).map(dict)
    return st.one_of(body, body, body, body, body, WILD) if prefix else body


def _value(hint: Any, key: str) -> st.SearchStrategy:
    """Mostly values of the field's type (so that validation gets deep), sometimes anything."""
    plausible = _plausible(hint, key)
    return st.one_of(plausible, plausible, plausible, WILD)


def _leaves(schema: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    leaves: dict[str, Any] = {}
    for name, sub in schema.items():
        leaves.update(_leaves(sub, f"{prefix}{name}.") if isinstance(sub, dict) else {prefix + name: sub})
    return leaves


DEFAULTS_ENTRIES = st.one_of(
    st.sampled_from([str(ROOT / "configs/federation/cpu_2actors.yaml"), str(ROOT / "configs/model/tiny_llava.yaml"),
                     "doc.yaml", "missing.yaml", str(ROOT / "configs"), "binary.yaml", "list.yaml", "rec.yaml",
                     "/" + "x" * 300, "a\x00b.yaml", "~nosuchuser/x.yaml"]),
    WILD)
MAPPINGS = st.tuples(_section(SCHEMA, ""), st.lists(DEFAULTS_ENTRIES, max_size=2), st.integers(0, 3)).map(
    lambda parts: {**parts[0], **({"defaults": parts[1]} if parts[2] == 0 else {})})
DOCUMENTS = st.one_of(
    MAPPINGS, MAPPINGS, MAPPINGS, MAPPINGS,
    st.tuples(_section(SCHEMA, ""), DEFAULTS_ENTRIES).map(lambda parts: {**parts[0], "defaults": parts[1]}),
    st.text(max_size=60),  # raw text: YAML errors, scalars, lists at top level
    st.sampled_from([  # YAML features a dict dump never writes: aliases (recursive too), tags, merges, depth
        "model: &a {lora: *a}\n", "&x {data: *x}\n", "federation: {budgets: &b [1, *b]}\n", "defaults: &d [*d]\n",
        "name: !!binary aGVsbG8=\n", "name: !!python/object:os.system x\n", "name: !!set {a, b}\n",
        "seed: 2001-12-14\n", "base: &b {rounds: 2}\nfederation: {<<: *b}\n", "federation: {<<: [1, 2]}\n",
        "name: a\nname: b\n", "\ufeffname: a\n", "federation: {lr: 1e-3}\n", "data: " + "[" * 1000 + "]" * 1000,
        "model: " + "{a: " * 1000 + "1" + "}" * 1000,
        "defaults: [rec.yaml]\nmodel: &m {x: *m}\n",
    ]),
    WILD,
)


def _yaml_text(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


TYPED_OVERRIDE = st.sampled_from(sorted(_leaves(SCHEMA).items())).flatmap(
    lambda leaf: _value(leaf[1], leaf[0]).map(lambda value: f"{leaf[0]}={_yaml_text(value)}"))
WILD_OVERRIDE = st.one_of(
    st.tuples(st.one_of(st.sampled_from(DOTTED_KEYS), st.text(max_size=10), st.just("model.family.x"),
                        st.just("a..b"), st.just("")),
              st.one_of(WILD.map(_yaml_text), st.text(max_size=12), STRANGE_TEXT)).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.text(max_size=15))
OVERRIDES = st.one_of(st.just([]), st.lists(st.one_of(TYPED_OVERRIDE, TYPED_OVERRIDE, WILD_OVERRIDE), max_size=3))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "binary.yaml").write_bytes(bytes(range(256)))
    (folder / "list.yaml").write_text("- a\n- b\n")
    (folder / "rec.yaml").write_text("model: &a {x: *a}\n")
    return folder


def _write_document(folder: Path, document: Any) -> Path:
    path = folder / "doc.yaml"
    if isinstance(document, str):
        path.write_text(document)
    else:
        path.write_text(yaml.safe_dump(document, allow_unicode=True))
    return path


@settings(FUZZ, max_examples=120)
@given(document=DOCUMENTS, overrides=OVERRIDES)
def test_config_loading_raises_only_config_error(workdir: Path, document: Any, overrides: list[str]) -> None:
    path = _write_document(workdir, document)
    with _deadline():
        try:
            validate(load_config(path, overrides))
            event("valid config")
        except ConfigError as error:
            event(f"ConfigError on {error.field.split('.')[0].split('[')[0]}")
            assert error.field and error.message
            assert str(error).startswith(f"{error.field}: ")


@settings(FUZZ, max_examples=100)
@given(document=DOCUMENTS, overrides=OVERRIDES)
def test_validate_command_exits_0_or_2(workdir: Path, document: Any, overrides: list[str]) -> None:
    path = _write_document(workdir, document)
    code, out, err = _run_cli(["validate", str(path), *[f"--set={override}" for override in overrides]])
    event(f"exit {code}")
    if code == 0:
        assert out.startswith("ok: ") and "Traceback" not in err
    else:
        _assert_user_error(code, err)


@settings(FUZZ, max_examples=1)
@given(cases=st.lists(st.tuples(DOCUMENTS, OVERRIDES), min_size=6, max_size=6))
def test_validate_subprocess_exit_code_and_no_traceback(workdir: Path, cases: list[tuple[Any, list[str]]]) -> None:
    """Six generated configs through the real `f3ocus validate`; at most one that loads (a full validation
    imports torch: seconds), the others fail while loading (a fraction of a second each)."""
    slow_left = 1
    for index, (document, overrides) in enumerate(cases):
        overrides = [o for o in overrides if "\x00" not in o]  # argv cannot carry NUL bytes
        path = _write_document(workdir, document)
        target = path.rename(path.with_name(f"sub{index}.yaml"))
        try:
            load_config(target, overrides)
        except ConfigError:
            pass
        else:
            if slow_left == 0:
                continue
            slow_left -= 1
        argv = [sys.executable, "-m", "f3ocus.cli", "validate", str(target), *[f"--set={o}" for o in overrides]]
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert done.returncode in (0, 2), done.stderr[-3000:]
        assert "Traceback" not in done.stderr + done.stdout
        if done.returncode == 2:
            _assert_user_error(done.returncode, done.stderr)


def test_fuzz_found_config_bugs_are_config_errors(workdir: Path) -> None:
    """Regressions the fuzzing found: each used to escape as another exception (a traceback)."""
    cases = [
        ("model: {checkpoint: '~nosuchuser/ckpt'}\n", [], "model.checkpoint"),  # RuntimeError from expanduser
        ("data: {path: /" + "x" * 300 + "}\n", [], "data.path"),  # OSError: file name too long
        ("federation: {lr: " + "9" * 400 + "}\n", [], "federation.lr"),  # OverflowError int -> float
        ("defaults: 5\n", [], "defaults"),  # TypeError: int is not iterable
        ("defaults: [" + str(ROOT / "configs") + "]\n", [], "config"),  # IsADirectoryError
        ("defaults: [binary.yaml]\n", [], "config"),  # UnicodeDecodeError
        ('defaults: ["a\\0b.yaml"]\n', [], "config"),  # ValueError: embedded null byte (YAML "\0" is NUL)
        ("data: {modalities: [nosuchmnist]}\n", [], "data.modalities[0]"),  # KeyError later in the data builder
        ("data: " + "[" * 1000 + "]" * 1000, [], "config"),  # RecursionError in PyYAML
        ("", ["data=" + "[" * 1000], "data"),  # RecursionError in a --set value
        ("defaults: [rec.yaml]\nmodel: &m {x: *m}\n", [], "config"),  # RecursionError merging two self-aliases
        ("{'': 1}\n", [], "''"),  # an empty key used to give the field ""
    ]
    for text, overrides, field in cases:
        path = _write_document(workdir, text)
        with pytest.raises(ConfigError) as caught:
            validate(load_config(path, overrides))
        assert caught.value.field == field, (text, caught.value)


# ----------------------------------------------------------------------------------------------------- f3ocus solve
FINITE = st.floats(0, 1, allow_nan=False)
VALID_SCORES = st.integers(1, 4).flatmap(lambda n: st.integers(1, 6).flatmap(
    lambda units: st.lists(st.lists(FINITE, min_size=units, max_size=units), min_size=n, max_size=n)))
BAD_ENTRY = st.one_of(st.just(float("nan")), st.just(float("inf")), st.floats(-5, -1e-9), st.text(max_size=3),
                      st.none(), st.just([0.1]), st.just({"a": 1}), st.just(10**400))
BAD_SCORES = st.one_of(
    st.just([]), st.just([[]]), st.just([[[0.1, 0.2]]]), st.just(0.5), st.just("scores"), st.just({"a": [0.1]}),
    st.just([[0.1, 0.2], [0.3]]), st.just(None),
    VALID_SCORES.flatmap(lambda rows: st.tuples(st.integers(0, len(rows) - 1), st.integers(0, len(rows[0]) - 1),
                                                BAD_ENTRY).map(lambda change: _with(rows, *change))),
)
BUDGET_TEXT = st.one_of(st.lists(st.integers(-2, 8), min_size=1, max_size=5).map(lambda b: ",".join(map(str, b))),
                        st.text(max_size=10), st.sampled_from(["", ",", "1,,2", " 1 ", "1.5", "1e3", "9" * 5000,
                                                               "-1", "0x10", "nan", "1_0"]))


def _with(rows: list[list[float]], row: int, column: int, value: Any) -> list[list[Any]]:
    changed = [list(r) for r in rows]
    changed[row][column] = value
    return changed


def _json_text(scores: Any) -> str:
    try:
        return json.dumps(scores)  # NaN / Infinity become JSON's non-standard tokens, which json.loads reads
    except (TypeError, ValueError):
        return repr(scores)


NPY_ARRAYS = st.one_of(
    VALID_SCORES.map(np.array), VALID_SCORES.map(lambda rows: (np.array(rows) * 100).astype(np.int64)),
    st.tuples(st.integers(0, 4), st.sampled_from(["float64", "int64", "bool", "complex128", "U3", "float16"]))
    .flatmap(lambda spec: st.lists(st.integers(0, 3), min_size=spec[0], max_size=spec[0])
             .map(lambda shape: np.ones(shape, dtype=spec[1]))),
    st.just(np.array([[0.1, np.nan]])), st.just(np.array([[-1.0, 0.5]])),
    st.just(np.array([[1, 2]], dtype=object)), st.just(np.zeros((2, 3), dtype=[("a", "f8")])),
)


def _solve_argv(scores_path: Path, budgets: str, algorithm: str) -> list[str]:
    return ["solve", "--scores", str(scores_path), f"--budgets={budgets}", "--algorithm", algorithm,
            "--pop-size", "4", "--max-evals", "8", "--archive-size", "4"]


def _check_solve(code: int, out: str, err: str) -> None:
    event(f"valid scores: exit {code}")
    if code == 0:
        report = json.loads(out)
        assert report["pareto_front"] and report["selected"]["masks"]
    else:
        _assert_user_error(code, err)


def _budgets_for(shape: tuple[int, int]) -> st.SearchStrategy:
    """Budgets text that fits an (N, L) score matrix (mostly), or anything."""
    n_clients, n_units = shape
    fitting = st.lists(st.integers(1, n_units), min_size=n_clients, max_size=n_clients).map(
        lambda b: ",".join(map(str, b)))
    return st.one_of(fitting, fitting, fitting, BUDGET_TEXT)


def _shape(scores: Any) -> tuple[int, int]:
    rows = scores if isinstance(scores, list) and scores else [[0]]
    first = rows[0] if isinstance(rows[0], list) and rows[0] else [0]
    return len(rows), len(first)


@settings(FUZZ, max_examples=100)
@given(scores=st.one_of(BAD_SCORES, BAD_SCORES, VALID_SCORES, VALID_SCORES), data=st.data(),
       algorithm=st.sampled_from(["flow", "nsga2", "sa", "abc", "aco", "mopso"]),
       raw=st.one_of(st.none(), st.none(), st.none(), st.none(), st.binary(max_size=30), st.just("[" * 100_000)))
def test_solve_json_inputs_exit_2_with_a_message(workdir: Path, scores: Any, data: st.DataObject, algorithm: str,
                                                 raw: Any) -> None:
    budgets = data.draw(_budgets_for(_shape(scores)), label="budgets")
    path = workdir / "scores.json"
    if isinstance(raw, bytes):
        path.write_bytes(raw)
    else:
        path.write_text(raw if raw is not None else _json_text(scores))
    code, out, err = _run_cli(_solve_argv(path, budgets, algorithm))
    valid_input = raw is None and isinstance(scores, list) and scores and all(
        isinstance(row, list) and row and len(row) == len(scores[0]) and
        all(isinstance(v, float) and 0 <= v < float("inf") for v in row) for row in scores)
    if not valid_input:
        _assert_user_error(code, err)  # every invalid input: exit 2 and a message
    else:
        _check_solve(code, out, err)  # valid scores: 0, or 2 for budgets that do not fit


@settings(FUZZ, max_examples=40)
@given(array=NPY_ARRAYS, data=st.data())
def test_solve_npy_inputs_exit_2_with_a_message(workdir: Path, array: np.ndarray, data: st.DataObject) -> None:
    shape = array.shape if array.ndim == 2 and array.size else (1, 1)
    budgets = data.draw(_budgets_for(shape), label="budgets")
    path = workdir / "scores.npy"
    np.save(path, array, allow_pickle=True)
    code, out, err = _run_cli(_solve_argv(path, budgets, "flow"))
    if array.ndim != 2 or array.size == 0 or array.dtype.kind not in "iuf" or not np.all(np.isfinite(array)) \
            or np.any(array < 0):
        _assert_user_error(code, err)
    else:
        _check_solve(code, out, err)


def test_fuzz_found_solve_bugs_exit_2(workdir: Path) -> None:
    """Regressions: each used to end in a traceback."""
    cases = [
        ("scores.json", "[[" + "9" * 400 + ", 0.5]]", "1"),  # OverflowError: int too large for a float
        ("scores.json", "[" * 100_000, "1"),  # RecursionError in json.loads
        ("scores.npy", b"", "1"),  # EOFError: an empty .npy
    ]
    for name, content, budgets in cases:
        path = workdir / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        code, _, err = _run_cli(_solve_argv(path, budgets, "flow"))
        _assert_user_error(code, err)
        assert err.startswith("config error: --scores"), err
