"""docs/schema.md states exactly the schema the migrations build.

Its generated blocks are compared with the same blocks generated from the migrated test
database's catalog (tests/schema_doc.py); a difference fails with the table, the section and
the rows on both sides, and the command that regenerates the file.
"""

from __future__ import annotations

import difflib

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.rows import ALL_TABLES
from tests.schema_doc import DOC, REGENERATE, catalog_blocks, documented_blocks, render


def _sectioned(block: str) -> list[tuple[str, str]]:
    """Each line of a block with the section (Columns, Indexes, …) it is in."""
    section, lines = "", []
    for line in block.splitlines():
        if line.startswith("**"):
            section = line.strip("*")
        lines.append((section, line))
    return lines


def differences(doc: str, blocks: dict[str, str]) -> list[str]:
    """What `doc` states differently from `blocks` (the catalog's), one entry per change."""
    documented = documented_blocks(doc)
    found: list[str] = []
    for key in sorted(blocks.keys() | documented.keys()):
        if key not in documented:
            found.append(f"[{key}] is in the database but has no block in docs/schema.md")
            continue
        if key not in blocks:
            found.append(f"[{key}] is documented but not in the database")
            continue
        old, new = _sectioned(documented[key]), _sectioned(blocks[key])
        matcher = difflib.SequenceMatcher(None, [x[1] for x in old], [x[1] for x in new])
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                continue
            section = (old[i1:i2] or new[j1:j2])[0][0] or "heading"
            change = [f"[{key}] {section}:"]
            change += [f"  docs/schema.md: {line}" for _, line in old[i1:i2]]
            change += [f"  database:       {line}" for _, line in new[j1:j2]]
            found.append("\n".join(change))
    return found


async def test_docs_schema_md_matches_the_migrated_database(db_session: AsyncSession) -> None:
    doc, blocks = DOC.read_text(), await catalog_blocks(db_session)
    found = differences(doc, blocks)
    if found:
        pytest.fail(
            "docs/schema.md differs from the schema the migrations build:\n\n"
            + "\n\n".join(found)
            + f"\n\nRegenerate it (then review the prose around the tables): {REGENERATE}",
            pytrace=False,
        )
    assert render(doc, blocks) == doc, f"docs/schema.md is not as generated; run {REGENERATE}"
    assert {f"table:{name}" for name in ALL_TABLES} | {"functions"} == blocks.keys()


def test_a_difference_names_the_table_section_and_rows() -> None:
    doc = (
        "<!-- BEGIN GENERATED table:t -->\n**Columns**\n\n| `a` | `text` |\n"
        "<!-- END GENERATED -->\n"
    )
    actual = {"table:t": "**Columns**\n\n| `a` | `integer` |\n", "table:u": "x\n"}
    assert differences(doc, actual) == [
        "[table:t] Columns:\n"
        "  docs/schema.md: | `a` | `text` |\n"
        "  database:       | `a` | `integer` |",
        "[table:u] is in the database but has no block in docs/schema.md",
    ]
    assert render(doc, actual) == (
        "<!-- BEGIN GENERATED table:t -->\n**Columns**\n\n| `a` | `integer` |\n"
        "<!-- END GENERATED -->\n\n## u\n\nTODO: describe.\n\n"
        "<!-- BEGIN GENERATED table:u -->\nx\n<!-- END GENERATED -->\n"
    )
    with pytest.raises(ValueError, match="table:t"):
        render(doc, {})
