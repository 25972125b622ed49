"""The README stays true: every setting and command is documented, CI runs the README's command."""

import re
from pathlib import Path

from relq.cli import build_parser
from relq.core.settings import SETTINGS, load_settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented_in_the_readme():
    missing = [s.env for s in SETTINGS.values() if f"`{s.env}`" not in README]
    assert not missing, f"undocumented settings: {missing}"


def test_every_cli_command_is_documented_in_the_readme():
    commands = build_parser()._subparsers._group_actions[0].choices
    missing = [name for name in commands if f"`{name}" not in README]
    assert not missing, f"undocumented commands: {missing}"


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)
    assert "bash scripts/run.sh" in commands and "bash scripts/test.sh" in commands
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_a_wrong_setting_gets_a_sentence_with_what_was_expected():
    import pytest

    from relq.exceptions import SettingError

    with pytest.raises(SettingError, match="RELQ_MIN_N='few' is not a whole number"):
        load_settings({"RELQ_MIN_N": "few"})


def test_the_projects_documents_stand_alone_and_never_point_outside_the_repository():
    """README, pages, docs and the code's docstrings explain themselves: no ``../`` document, no
    design file a user of RelQ does not have."""
    root = Path(__file__).resolve().parent.parent
    texts = [root / "README.md", root / "app.py", *root.glob("pages/*.py"), *root.glob("docs/**/*.md")]
    texts += [*root.glob("relq/**/*.py"), *root.glob("bench/*.md"), *root.glob("bench/*.py")]
    pointing_out = [
        str(p.relative_to(root))
        for p in texts
        if re.search(r"\.\./shared|DESIGN\.md|\bDESIGN\b", p.read_text(encoding="utf-8"))
    ]
    assert not pointing_out
