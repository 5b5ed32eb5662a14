"""The README's reference tables are generated from the code; they must not drift from it."""

from __future__ import annotations

from pathlib import Path

from stream_scorer.features.catalog import markdown_table as feature_table
from stream_scorer.settings_doc import markdown_table as settings_table
from stream_scorer.settings_doc import rows

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_settings_table_is_current():
    assert settings_table() in README, "regenerate with `python -m stream_scorer.settings_doc`"


def test_every_setting_has_its_env_var_in_the_readme():
    missing = [env for env, _, _ in rows() if f"`{env}`" not in README]
    assert not missing


def test_feature_table_is_current():
    assert feature_table() in README


def test_readme_opens_with_the_two_commands():
    first_block = README.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert [line.split()[:2] for line in first_block] == [["make", "demo"], ["make", "test"]]
