"""The lock file: the exact versions of the environment that CI's main run passes with.

    python scripts/lock.py .venv            write requirements-lock.txt from that environment
    python scripts/lock.py --check .venv    exit 1 (and say what differs) if it does not match

requirements.txt and pyproject.toml give floors only, so that Colab keeps what
it ships. requirements-lock.txt pins every package of the environment that
`bash scripts/setup.sh ci` builds (the course, its dev and site extras,
torch 2.13.0 on CPU, Python 3.11 on Linux), as `name==version` lines. It is a
pip constraints file: `bash scripts/setup.sh course locked` installs exactly
the tested set (pip install -c requirements-lock.txt ...), and .ci/run's main
run uses it, so the lock is what is tested.

Why this format: PEP 751's pylock.toml (`pip lock`) records the address of
every wheel on the index it was made from, and pip-tools and uv write
`name==version` lists (uv.lock also records its index). The test machines
install from a mirror of the package index, whose addresses are no use to
anyone else; a `name==version` list (pip-tools' format, without hashes, since
the hashes of the mirror's files are not checked against the public index
here) installs from any index, with pip alone.
"""

import argparse
import platform
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCK = REPO_ROOT / "requirements-lock.txt"
LEFT_OUT = {"sdnotes"}  # the course itself (installed from the checkout)


def frozen(venv):
    """{name: version} of every package in the environment `venv`, the course left out."""
    output = subprocess.run([str(Path(venv) / "bin" / "python"), "-m", "pip", "list", "--format=freeze",
                             "--exclude-editable"], check=True, capture_output=True, text=True).stdout
    pins = {}
    for line in output.splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            if name.lower() not in LEFT_OUT:
                pins[name] = version.split("+")[0]  # 2.13.0+cpu -> 2.13.0: the same release on any index
    return pins


def read_lock(path=LOCK):
    """{name: version} of the lock file's pins."""
    pins = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==", 1)
            pins[name] = version
    return pins


def lock_text(pins, venv):
    python = subprocess.run([str(Path(venv) / "bin" / "python"), "-c", "import platform; print(platform.python_version())"],
                            check=True, capture_output=True, text=True).stdout.strip()
    header = [
        "# The exact versions CI's main run passes with (written by python scripts/lock.py .venv;",
        f"# Python {python}, {platform.system()} {platform.machine()}, torch on CPU).",
        "# Install exactly these: bash scripts/setup.sh course locked (a pip constraints file).",
    ]
    return "\n".join(header + [f"{name}=={version}" for name, version in sorted(pins.items(), key=lambda item: item[0].lower())]) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("venv", help="the environment to read, e.g. .venv")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if the environment differs")
    arguments = parser.parse_args()
    pins = frozen(arguments.venv)
    if arguments.check:
        locked = read_lock()
        differing = sorted(f"{name}: {locked.get(name, 'not locked')} in the lock, {version} installed"
                           for name, version in pins.items() if locked.get(name) != version)
        if differing:
            print("the environment differs from requirements-lock.txt:\n  " + "\n  ".join(differing))
            return 1
        print(f"{arguments.venv} matches requirements-lock.txt ({len(pins)} packages)")
        return 0
    LOCK.write_text(lock_text(pins, arguments.venv), encoding="utf-8")
    print(f"wrote {LOCK.name}: {len(pins)} packages from {arguments.venv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
