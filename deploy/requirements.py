"""Print ktsweep's requirements from pyproject.toml, one a line: the base ones and those of each
extra named on the command line. The images install them through constraints.txt, before the
code, so that a code change rebuilds only the last layer.

    python deploy/requirements.py tensorflow-cpu > requirements.txt
"""

import sys
import tomllib
from pathlib import Path

pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
project = tomllib.loads(pyproject.read_text())["project"]
requirements = list(project["dependencies"])
for extra in sys.argv[1:]:
    requirements += project["optional-dependencies"][extra]
print("\n".join(requirements))
