"""The translation catalogues under locale/ are complete, compiled and in step with the code.

- Every language offered in settings.LANGUAGES (besides the source language) is fully translated:
  no empty msgstr, no fuzzy entry, the same placeholders as the source text.
- Each committed .mo holds exactly the translations of its .po (the app needs no gettext at run
  time, so a forgotten `compilemessages` would ship stale text).
- Every catalogue lists exactly the strings marked for translation in templates/ and the Python
  code: `makemessages` is run on a copy of the project and its extraction is compared. A string
  added without updating the catalogues fails here, naming the string.

To fix a failure:
    .venv/bin/python manage.py makemessages -l fr -l de -l nl \
        --ignore=.venv --ignore=var --ignore=node_modules --ignore=tests
    # translate the new entries in locale/fr/LC_MESSAGES/django.po (no fuzzy entries)
    .venv/bin/python manage.py compilemessages --ignore=.venv --ignore=node_modules --ignore=var
"""

from __future__ import annotations

import os
import re
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings
from django.utils import translation

ROOT = Path(settings.BASE_DIR)
LOCALE_DIR = ROOT / "locale"
CATALOGUES = sorted(LOCALE_DIR.glob("*/LC_MESSAGES/django.po"))
LANGUAGES_IN_TREE = [po.parents[1].name for po in CATALOGUES]
OFFERED = [code for code, _name in settings.LANGUAGES if code != settings.LANGUAGE_CODE]
# The same --ignore list as the documented makemessages command.
MAKEMESSAGES_IGNORE = [".venv", "var", "node_modules", "tests"]

# --- A small .po reader (no dependency) -------------------------------------------------------


@dataclass
class Entry:
    msgid: str = ""
    msgid_plural: str | None = None
    msgctxt: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    line: int = 0

    @property
    def key(self) -> tuple[str | None, str]:
        return (self.msgctxt, self.msgid)

    @property
    def translated(self) -> bool:
        return bool(self.msgstr) and all(self.msgstr.values())

    @property
    def fuzzy(self) -> bool:
        return "fuzzy" in self.flags


_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    '"': '"',
    "\\": "\\",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
}


def _unquote(text: str, path: Path, lineno: int) -> str:
    text = text.strip()
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise ValueError(f"{path}:{lineno}: expected a quoted string, got {text!r}")
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), text[1:-1])


def parse_po(path: Path) -> tuple[Entry | None, list[Entry]]:
    """(header, entries) of a .po file; obsolete (#~) entries are left out.

    Works line by line: entries need no blank line between them (makemessages sometimes writes
    none after the header).
    """
    entries: list[Entry] = []
    current: Entry | None = None
    target: tuple[str, int | None] | None = None  # which field continuation strings extend
    pending_flags: set[str] = set()

    def finish() -> None:
        nonlocal current
        if current is not None:
            entries.append(current)
        current = None

    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#~"):
            if line.startswith("#~"):
                target = None
            continue
        if line.startswith("#"):
            if current is not None and current.msgstr:
                finish()  # a comment after a msgstr starts the next entry
            if line.startswith("#,"):
                pending_flags |= {f.strip() for f in line[2:].split(",") if f.strip()}
            target = None
            continue
        keyword, _, rest = line.partition(" ")
        if line.startswith('"'):
            if current is None or target is None:
                raise ValueError(f"{path}:{lineno}: string outside an entry")
            name, index = target
            if name == "msgstr":
                current.msgstr[index or 0] += _unquote(line, path, lineno)
            else:
                setattr(current, name, getattr(current, name) + _unquote(line, path, lineno))
            continue
        # msgctxt always opens an entry; msgid does unless it follows that entry's msgctxt.
        if keyword == "msgctxt" or (keyword == "msgid" and (current is None or current.msgstr)):
            finish()
            current = Entry(flags=pending_flags, line=lineno)
            pending_flags = set()
        if current is None:
            raise ValueError(f"{path}:{lineno}: unexpected {line!r}")
        if keyword in ("msgctxt", "msgid", "msgid_plural"):
            setattr(current, keyword, _unquote(rest, path, lineno))
            target = (keyword, None)
        elif m := re.fullmatch(r"msgstr(?:\[(\d+)\])?", keyword):
            index = int(m.group(1) or 0)
            current.msgstr[index] = _unquote(rest, path, lineno)
            target = ("msgstr", index)
        else:
            raise ValueError(f"{path}:{lineno}: unknown keyword {keyword!r}")
    finish()
    header = next((e for e in entries if e.msgid == "" and e.msgctxt is None), None)
    return header, [e for e in entries if e is not header]


def read_mo(path: Path) -> dict[bytes, bytes]:
    """The (original → translation) table of a GNU .mo file, as raw bytes."""
    data = path.read_bytes()
    magic = struct.unpack("<I", data[:4])[0]
    order = "<" if magic == 0x950412DE else ">"
    if struct.unpack(order + "I", data[:4])[0] != 0x950412DE:
        raise ValueError(f"{path}: not a .mo file")
    _revision, count, originals, translations = struct.unpack(order + "4I", data[4:20])
    table = {}
    for i in range(count):
        olen, ooff = struct.unpack(order + "2I", data[originals + 8 * i : originals + 8 * i + 8])
        tlen, toff = struct.unpack(
            order + "2I", data[translations + 8 * i : translations + 8 * i + 8]
        )
        table[data[ooff : ooff + olen]] = data[toff : toff + tlen]
    return table


def expected_mo_table(path: Path) -> dict[bytes, bytes]:
    """What msgfmt puts in the .mo for a .po: translated, non-fuzzy entries and the header."""
    header, entries = parse_po(path)
    table = {}
    if header is not None:
        # msgfmt leaves out POT-Creation-Date, which each makemessages run updates.
        kept = [f for f in header.msgstr[0].splitlines(True) if not f.startswith("POT-Creation")]
        table[b""] = "".join(kept).encode()
    for e in entries:
        if not e.translated or e.fuzzy:
            continue
        original = e.msgid if e.msgid_plural is None else f"{e.msgid}\0{e.msgid_plural}"
        if e.msgctxt is not None:
            original = f"{e.msgctxt}\x04{original}"
        translated = "\0".join(e.msgstr[i] for i in sorted(e.msgstr))
        table[original.encode()] = translated.encode()
    return table


_PLACEHOLDER = re.compile(r"%\([^)]+\)[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa%]|%[-#0 +]*\d*[sdif]")
_BRACE = re.compile(r"\{[^{}]*\}")


def placeholders(entry: Entry, text: str) -> list[str]:
    found = []
    if "python-format" in entry.flags:
        found += [p for p in _PLACEHOLDER.findall(text) if p != "%%"]
    if "python-brace-format" in entry.flags:
        found += _BRACE.findall(text)
    return sorted(found)


def _describe(entries: list[Entry]) -> str:
    return "\n".join(f"  line {e.line}: {e.msgid!r}" for e in entries)


# --- Catalogue content ------------------------------------------------------------------------


def test_catalogues_exist_for_every_offered_language():
    assert LANGUAGES_IN_TREE, f"no catalogue under {LOCALE_DIR}"
    missing = [code for code in OFFERED if code not in LANGUAGES_IN_TREE]
    assert not missing, f"settings.LANGUAGES offers {missing} but locale/ has no catalogue for it"
    # French is the one the product promises to be complete; German and Dutch follow later.
    assert "fr" in OFFERED


@pytest.mark.parametrize("language", OFFERED)
def test_offered_language_is_completely_translated(language):
    header, entries = parse_po(LOCALE_DIR / language / "LC_MESSAGES" / "django.po")
    assert header is not None and not header.fuzzy, f"{language}: header missing or fuzzy"
    assert f"Language: {language}\n" in header.msgstr[0]
    untranslated = [e for e in entries if not e.translated]
    fuzzy = [e for e in entries if e.fuzzy]
    assert not untranslated, f"{language}: untranslated entries:\n{_describe(untranslated)}"
    assert not fuzzy, (
        f"{language}: fuzzy entries (check, then remove the flag):\n{_describe(fuzzy)}"
    )


@pytest.mark.parametrize("language", LANGUAGES_IN_TREE)
def test_translations_keep_the_placeholders(language):
    _header, entries = parse_po(LOCALE_DIR / language / "LC_MESSAGES" / "django.po")
    wrong = []
    for e in entries:
        for index, text in e.msgstr.items():
            if not text:
                continue
            source = e.msgid if index == 0 or e.msgid_plural is None else e.msgid_plural
            expected, got = placeholders(e, source), placeholders(e, text)
            # A singular form may leave out the count (e.g. "une réunion" for %(count)s).
            if e.msgid_plural is not None and index == 0:
                ok = set(got) <= set(expected)
            else:
                ok = got == expected
            if not ok:
                wrong.append(f"  line {e.line}: {e.msgid!r} has {expected}, msgstr[{index}] {got}")
    assert not wrong, f"{language}: placeholders differ:\n" + "\n".join(wrong)


def test_french_is_what_a_french_user_sees():
    """The compiled catalogue is the one Django loads (and allauth's own French is there too)."""
    with translation.override("fr"):
        assert translation.gettext("Sign out") == "Se déconnecter"
        assert translation.gettext("Two-factor authentication") == (
            "Authentification à deux facteurs"
        )
        assert translation.gettext("Password") == "Mot de passe"  # from allauth/Django


# --- Compiled catalogues ----------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES_IN_TREE)
def test_compiled_catalogue_matches_its_source(language):
    po = LOCALE_DIR / language / "LC_MESSAGES" / "django.po"
    mo = po.with_suffix(".mo")
    assert mo.exists(), f"{mo.relative_to(ROOT)} missing: run compilemessages"
    actual, expected = read_mo(mo), expected_mo_table(po)
    stale = sorted(k.decode() for k in expected.keys() ^ actual.keys())
    changed = sorted(
        k.decode() for k in expected.keys() & actual.keys() if expected[k] != actual[k]
    )
    assert not stale and not changed, (
        f"{mo.relative_to(ROOT)} is out of date with its .po: run compilemessages.\n"
        f"  entries only on one side: {stale[:10]}\n  translations that differ: {changed[:10]}"
    )


# --- Catalogues against the source ------------------------------------------------------------


def _copy_ignore(directory: str, names: list[str]) -> set[str]:
    skip = {
        ".git",
        ".venv",
        "var",
        "node_modules",
        "tests",
        "__pycache__",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        "staticfiles",
    }
    return {n for n in names if n in skip or n.endswith((".egg-info", ".mo"))}


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> set[tuple[str | None, str]]:
    """The msgids that `makemessages` extracts from the project now, run on a copy of the tree.

    The copy keeps the real catalogues untouched: makemessages writes next to settings.LOCALE_PATHS
    and to any locale/ directory of the tree it walks.
    """
    if shutil.which("xgettext") is None or shutil.which("msgmerge") is None:
        message = "GNU gettext is needed to extract strings: apt-get install gettext"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    copy = tmp_path_factory.mktemp("i18n") / "project"
    shutil.copytree(ROOT, copy, ignore=_copy_ignore, symlinks=True)
    previous = Path.cwd()
    os.chdir(copy)
    try:
        with override_settings(LOCALE_PATHS=[copy / "locale"]):
            call_command(
                "makemessages",
                locale=["fr"],
                ignore_patterns=MAKEMESSAGES_IGNORE,
                keep_pot=True,
                verbosity=0,
            )
    finally:
        os.chdir(previous)
    _header, entries = parse_po(copy / "locale" / "django.pot")
    return {e.key for e in entries}


@pytest.mark.parametrize("language", LANGUAGES_IN_TREE)
def test_catalogue_lists_every_translatable_string(language, extracted):
    _header, entries = parse_po(LOCALE_DIR / language / "LC_MESSAGES" / "django.po")
    in_catalogue = {e.key for e in entries}
    missing = sorted(extracted - in_catalogue, key=str)
    obsolete = sorted(in_catalogue - extracted, key=str)
    assert not missing and not obsolete, (
        f"locale/{language} is out of step with the code: run makemessages, translate, then "
        f"compilemessages (see this module's docstring).\n"
        f"  marked for translation but not in the catalogue: {[m for _c, m in missing]}\n"
        f"  in the catalogue but no longer in the code: {[m for _c, m in obsolete]}"
    )
