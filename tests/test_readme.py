"""The README's two set-up commands are the ones CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", setup)


def test_readme_has_exactly_two_setup_commands() -> None:
    commands = _readme_commands()
    assert commands == [
        'pip install -e ".[dev]" && analytics-assets demo',
        'pip install -e ".[dev]" && pytest',
    ]


def test_ci_runs_the_readme_install_and_test_commands() -> None:
    install, test = _readme_commands()[1].split(" && ")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert install in ci
    assert any(line.startswith(test) for line in ci)
