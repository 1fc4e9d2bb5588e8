"""House rules that keep the repository honest: CI runs the README's command; the package installs."""

import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    """.ci/run runs the README's pytest command as it is; CI may only add options after it
    (where to keep the executed notebooks, the slowest-tests report)."""
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"```bash\n(.+?)\n```", readme)
    test_commands = [command for command in commands if "pytest" in command]
    assert len(test_commands) == 1, "the README must show exactly one test command"
    pytest_command = test_commands[0].split("&&")[-1].strip()
    assert pytest_command.startswith(".venv/bin/python -m pytest"), test_commands[0]
    ci_lines = [line.strip() for line in ci.splitlines()]
    assert any(line == pytest_command or line.startswith(pytest_command + " ") for line in ci_lines), (
        f".ci/run must run the README's test command ({pytest_command}), adding options only after it")


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


def test_readme_layout_names_every_module_script_and_folder():
    """The README's Layout block names every package module, script and top-level folder, and
    names nothing that is not there (a file name followed by .py or .sh that does not exist)."""
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):readme.index("## Licences")]
    names = set(re.findall(r"[\w.-]+", layout))
    missing = []
    for folder in ("sdnotes", "sdnotes/pocket", "scripts"):
        for path in sorted((ROOT / folder).iterdir()):
            if path.name.startswith(("_", ".")) or path.suffix not in (".py", ".sh", ""):
                continue
            if path.name not in names and path.stem not in names and path.name + "/" not in layout:
                missing.append(f"{folder}/{path.name}")
    for path in sorted(ROOT.iterdir()):
        tracked_folder = path.is_dir() and not path.name.startswith(".") and path.name not in ("build", "runs")
        if tracked_folder and not path.name.endswith(".egg-info") and f"{path.name}/" not in layout:
            missing.append(f"{path.name}/")
    assert not missing, f"README Layout does not name: {missing}"
    for mentioned in re.findall(r"([\w/]+\.(?:py|sh))", layout):
        candidates = [ROOT / mentioned] + [ROOT / folder / mentioned for folder in
                                           ("sdnotes", "sdnotes/pocket", "sdnotes/pocket/control", "scripts", "site")]
        assert any(candidate.exists() for candidate in candidates), f"README Layout names {mentioned}, which does not exist"


def test_lock_pins_every_requirement_within_its_floor():
    """requirements-lock.txt (scripts/lock.py) pins every dependency and every dev and site tool,
    each at a version its requirement admits: CI's main run installs from it."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = {}
    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            locked[canonicalize_name(name)] = version
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"] + project["optional-dependencies"]["site"]
    for text in wanted:
        requirement = Requirement(text)
        version = locked.get(canonicalize_name(requirement.name))
        assert version is not None, f"{requirement.name} is not in requirements-lock.txt: run python scripts/lock.py .venv"
        assert requirement.specifier.contains(version), f"the lock's {requirement.name}=={version} is outside {requirement}"
