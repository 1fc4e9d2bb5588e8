"""Colab's package versions: the snapshot kept in colab/, and the constraints CI derives from it.

Colab publishes what its runtime holds in the `googlecolab/backend-info`
repository, file `pip-freeze.gpu.txt`. A copy is kept in
colab/pip-freeze.gpu.txt, with a first line that says where and when it came
from. The course is tested on those versions (scripts/test_colab.sh), and its
floors in requirements.txt are Colab's versions (tests/test_colab.py).

    python scripts/colab_snapshot.py refresh NEW_FILE --date 2026-08-19 --commit a724079
        keep a newer pip-freeze.gpu.txt (fetched from that repository) as the snapshot
    python scripts/colab_snapshot.py constraints OUT
        write pip constraints for an environment with Colab's versions (used by scripts/test_colab.sh)

The constraints are the snapshot's `name==version` lines except PyTorch and the
CUDA libraries that come with it: Colab's torch is a CUDA build (e.g.
2.11.0+cu128), which the test machines cannot install, so the CPU build of
torch 2.13.0 stands in for it (the README says so), and setuptools is left free
(torch 2.13 needs a newer one than Colab's). Lines that install from a
URL (`name @ https://...`) are left out: nothing the course needs is among them.
The requirements Colab does not ship (ftfy, for example) are pinned at their
floors in requirements.txt, so that this one environment tests every floor.
"""

import argparse
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = REPO_ROOT / "colab" / "pip-freeze.gpu.txt"
REQUIREMENTS = REPO_ROOT / "requirements.txt"
SOURCE = "googlecolab/backend-info, file pip-freeze.gpu.txt"
TORCH_STAND_IN = "torch==2.13.0"
# Colab's CUDA builds of PyTorch and what they bring; the CPU torch above stands in. And setuptools:
# the stand-in torch 2.13 requires setuptools >= 77, Colab's torch 2.11 lives with its 75.2.
NOT_CONSTRAINED = re.compile(r"^(torch|torchvision|torchaudio|torchao|torchcodec|torchdata|torchtune|torchsummary|"
                             r"triton|nvidia-.*|cupy-.*|jax|jaxlib|jax-cuda.*|setuptools)$")


def canonical(name):
    """Package names as pip compares them (PEP 503): 'Jinja2' -> 'jinja2', 'typing_extensions' -> 'typing-extensions'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_snapshot(path=SNAPSHOT):
    """{canonical name: version} of the snapshot's `name==version` lines."""
    versions = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "==" not in line:
            continue
        name, version = line.split("==", 1)
        versions[canonical(name)] = version.strip()
    return versions


def snapshot_header(path=SNAPSHOT):
    """The snapshot's first line: where it came from, and its date."""
    return Path(path).read_text(encoding="utf-8").splitlines()[0]


def floors(requirements=REQUIREMENTS):
    """{canonical name: floor version} of requirements.txt's `name>=version` lines."""
    result = {}
    for line in Path(requirements).read_text(encoding="utf-8").splitlines():
        requirement = line.split("#")[0].strip()
        if not requirement:
            continue
        if ">=" not in requirement or "," in requirement:
            raise SystemExit(f"requirements.txt: '{requirement}' is not `name>=version` (the floors are lower bounds only)")
        name, floor = requirement.split(">=")
        result[canonical(name)] = floor.strip()
    return result


def constraints(path=SNAPSHOT, requirements=REQUIREMENTS):
    """pip constraint lines for an environment with Colab's versions, torch 2.13.0 CPU standing in,
    and every requirement Colab does not ship at its floor."""
    colab = read_snapshot(path)
    lines = [TORCH_STAND_IN]
    for name, version in sorted(colab.items()):
        if NOT_CONSTRAINED.match(name) or "+" in version:
            continue
        lines.append(f"{name}=={version}")
    for name, floor in sorted(floors(requirements).items()):
        if name not in colab:
            lines.append(f"{name}=={floor}")
    return lines


def refresh(new_file, date, commit):
    text = Path(new_file).read_text(encoding="utf-8")
    versions = [line for line in text.splitlines() if "==" in line and not line.startswith("#")]
    if not versions:
        raise SystemExit(f"{new_file}: no `name==version` lines; is it Colab's pip-freeze.gpu.txt?")
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date):
        raise SystemExit(f"--date {date!r}: give the snapshot's commit date as YYYY-MM-DD")
    header = f"# Colab's runtime packages, from {SOURCE}, commit {commit} of {date}.\n"
    SNAPSHOT.parent.mkdir(exist_ok=True)
    SNAPSHOT.write_text(header + text, encoding="utf-8")
    print(f"wrote {SNAPSHOT.relative_to(REPO_ROOT)}: {len(versions)} packages, {date}. "
          "Now set the floors in requirements.txt and pyproject.toml to Colab's versions "
          "(python -m pytest tests/test_colab.py says which) and run bash scripts/test_colab.sh.")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    refresh_command = commands.add_parser("refresh", help="keep a newer pip-freeze.gpu.txt as the snapshot")
    refresh_command.add_argument("new_file")
    refresh_command.add_argument("--date", required=True, help="the snapshot's commit date, YYYY-MM-DD")
    refresh_command.add_argument("--commit", required=True, help="the backend-info commit it comes from")
    constraints_command = commands.add_parser("constraints", help="write pip constraints with Colab's versions")
    constraints_command.add_argument("out")
    arguments = parser.parse_args()
    if arguments.command == "refresh":
        refresh(arguments.new_file, arguments.date, arguments.commit)
    else:
        Path(arguments.out).write_text("\n".join(constraints()) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
