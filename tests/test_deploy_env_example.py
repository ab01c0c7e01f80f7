"""deploy/env.example documents every environment variable that the settings read."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READER = re.compile(r"\benv_(?:str|bool|int|list|url|secret|choice)\(\s*\"([A-Z][A-Z0-9_]*)\"")
DOCUMENTED = re.compile(r"^(?:# )?([A-Z][A-Z0-9_]*)=", re.MULTILINE)


def test_env_example_documents_every_variable_read_by_settings() -> None:
    read = set(READER.findall((ROOT / "visio_broker" / "settings.py").read_text()))
    documented = set(DOCUMENTED.findall((ROOT / "deploy" / "env.example").read_text()))

    assert len(read) > 20  # the pattern still matches how settings.py reads variables
    assert sorted(read - documented) == []
