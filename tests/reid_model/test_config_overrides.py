"""Override values are YAML: one nested 20,000 levels deep was a RecursionError (exit 70); it is a
one-line user error now, as is any value nested deeper than a config value can be."""

from __future__ import annotations

import pytest

from manifests import ExitCode
from reid_model.config import MAX_OVERRIDE_NESTING, parse_overrides
from reid_model.errors import ConfigError


@pytest.mark.parametrize("depth", [MAX_OVERRIDE_NESTING + 1, 20_000])
@pytest.mark.slow
def test_a_deeply_nested_value_is_a_user_error(depth):
    with pytest.raises(ConfigError, match=f"more than {MAX_OVERRIDE_NESTING} levels deep"):
        parse_overrides([f"solver.base_lr={'[' * depth}{']' * depth}"])
    with pytest.raises(ConfigError, match="levels deep"):
        parse_overrides(["solver.base_lr=" + "{a: " * depth + "1" + "}" * depth])


def test_shallow_values_still_parse():
    assert parse_overrides(["solver.base_lr=[[1, 2], {a: [3]}]"]) == {
        "solver": {"base_lr": [[1, 2], {"a": [3]}]}
    }


@pytest.mark.slow
def test_the_train_command_says_so_in_one_line(run_opreid, expect_error, tmp_path):
    deep = "[" * 20_000 + "]" * 20_000
    result = run_opreid(
        "train", "--config", "tiny", "--data", tmp_path, "-o", tmp_path / "run", f"solver.base_lr={deep}"
    )
    expect_error(result, "opreid train", ExitCode.USER, "levels deep")


def test_a_value_that_anchors_expand_beyond_memory_is_a_user_error():
    laughs = "[" + ", ".join(["&a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [
        f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)
    ]) + "]"  # fmt: skip
    with pytest.raises(ConfigError, match="more than 100,000 items"):
        parse_overrides([f"solver.base_lr={laughs}"])
