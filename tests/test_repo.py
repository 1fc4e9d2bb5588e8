"""House rules that keep the repository honest: CI runs the README's command; the package installs."""

import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"```bash\n(.+?)\n```", readme)
    test_commands = [command for command in commands if "pytest" in command]
    assert len(test_commands) == 1, "the README must show exactly one test command"
    assert test_commands[0] in ci.splitlines(), ".ci/run must run the README's test command unchanged"


def test_requirements_mirror_the_package_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [
        line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for dependency in project["dependencies"]:
        assert dependency in requirements, f"{dependency} is in pyproject.toml but not in requirements.txt"
    for line in requirements:
        assert "==" not in line, f"requirements.txt pins {line}: use lower bounds so Colab keeps its torch"
