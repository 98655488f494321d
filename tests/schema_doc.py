"""docs/schema.md's reference tables, generated from a migrated database's catalog.

The prose of docs/schema.md is written by hand; each block between
`<!-- BEGIN GENERATED <key> -->` and `<!-- END GENERATED -->` is generated here, where <key>
is `table:<name>` (columns, constraints, indexes, triggers) or `functions`.
Regenerate after a migration (a throwaway server is chosen as for the tests):

    .venv/bin/python -m tests.schema_doc
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.database import DatabaseConnection
from exportsathi_db.migrations import init_db
from exportsathi_db.testing import create_database, drop_database, postgres_server

DOC = Path(__file__).resolve().parent.parent / "docs" / "schema.md"
REGENERATE = ".venv/bin/python -m tests.schema_doc"
BLOCK = re.compile(r"<!-- BEGIN GENERATED (\S+) -->\n(.*?)<!-- END GENERATED -->\n", re.S)
KINDS = {"p": "primary key", "f": "foreign key", "u": "unique", "c": "check", "x": "exclusion"}
TRIGGER = re.compile(r"CREATE (?:CONSTRAINT )?TRIGGER \S+ (.+) ON \S+ (.+) EXECUTE FUNCTION .*")


def code(value: object) -> str:
    return "—" if value is None else "`" + str(value).replace("|", "\\|") + "`"


def table(header: str, rows: list[list[str]]) -> str:
    if not rows:
        return "None.\n"
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


async def _rows(session: AsyncSession, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in (await session.execute(text(sql), params)).all()]


async def _table_block(session: AsyncSession, oid: int) -> str:
    columns = await _rows(
        session,
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
        " pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a LEFT JOIN pg_attrdef d"
        " ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        " WHERE a.attrelid = :oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        oid=oid,
    )
    constraints = await _rows(
        session,
        "SELECT conname, contype::text, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = :oid AND contype <> 'n'"  # NOT NULL (a pg_constraint row in 18+)
        " ORDER BY position(contype::text IN 'pfuxc'), conname",
        oid=oid,
    )
    indexes = await _rows(
        session,
        "SELECT c.relname, x.indisunique, pg_get_indexdef(x.indexrelid) FROM pg_index x"
        " JOIN pg_class c ON c.oid = x.indexrelid WHERE x.indrelid = :oid ORDER BY c.relname",
        oid=oid,
    )
    triggers = await _rows(
        session,
        "SELECT tgname, pg_get_triggerdef(oid), tgfoid::regprocedure::text FROM pg_trigger"
        " WHERE tgrelid = :oid AND NOT tgisinternal ORDER BY tgname",
        oid=oid,
    )
    sections = {
        "Columns": table(
            "| column | type | null | default |",
            [[code(n), code(t), "not null" if nn else "null", code(d)] for n, t, nn, d in columns],
        ),
        "Constraints": table(
            "| constraint | kind | definition |",
            [[code(n), KINDS[k], code(d)] for n, k, d in constraints],
        ),
        "Indexes": table(  # pg_get_indexdef's text after USING: method, keys, any WHERE
            "| index | unique | definition |",
            [
                [code(n), "yes" if u else "no", code(d.split(" USING ", 1)[1])]
                for n, u, d in indexes
            ],
        ),
        "Triggers": table(
            "| trigger | fires | function |",
            [[code(n), TRIGGER.sub(r"\1 \2", d), code(f)] for n, d, f in triggers],
        ),
    }
    return "\n".join(f"**{title}**\n\n{body}" for title, body in sections.items())


async def catalog_blocks(session: AsyncSession) -> dict[str, str]:
    """Every generated block's content, keyed as in docs/schema.md, from `session`'s database."""
    tables = await _rows(
        session,
        "SELECT c.oid, c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace"
        " AND c.relkind IN ('r', 'p') AND c.relname <> 'alembic_version' ORDER BY c.relname",
    )
    blocks = {f"table:{name}": await _table_block(session, oid) for oid, name in tables}
    functions = await _rows(
        session,
        "SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid) FROM pg_proc p"
        " WHERE p.pronamespace = 'public'::regnamespace AND NOT EXISTS (SELECT FROM pg_depend d"
        " WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')"
        " ORDER BY 1",
    )
    callers = await _rows(
        session,
        "SELECT tgfoid::regprocedure::text, tgname, tgrelid::regclass::text FROM pg_trigger"
        " WHERE NOT tgisinternal ORDER BY tgrelid::regclass::text, tgname",
    )
    blocks["functions"] = "\n".join(
        f"**{code(name)}**\n\n```sql\n"
        + "\n".join(line.rstrip() for line in body.strip().splitlines())
        + "\n```\n\nCalled by:\n\n"
        + table("| trigger | on table |", [[code(t), code(r)] for f, t, r in callers if f == name])
        for name, body in functions
    )
    return blocks


def documented_blocks(doc: str) -> dict[str, str]:
    return {key: body for key, body in BLOCK.findall(doc)}


def render(doc: str, blocks: dict[str, str]) -> str:
    """`doc` with every block replaced by `blocks`'; a section is appended for a new table."""
    for key in sorted(blocks.keys() - documented_blocks(doc).keys()):
        doc += f"\n## {key.removeprefix('table:')}\n\nTODO: describe.\n\n"
        doc += f"<!-- BEGIN GENERATED {key} -->\n<!-- END GENERATED -->\n"
    stale = documented_blocks(doc).keys() - blocks.keys()
    if stale:
        raise ValueError(f"{DOC} documents {sorted(stale)}, not in the database: delete them")
    return BLOCK.sub(
        lambda m: f"<!-- BEGIN GENERATED {m[1]} -->\n{blocks[m[1]]}<!-- END GENERATED -->\n", doc
    )


async def _generate() -> dict[str, str]:
    with postgres_server() as admin_url:
        url = await create_database(admin_url, "exportsathi_schema_doc")
        db = DatabaseConnection(url)
        try:
            await init_db(db)
            async with AsyncSession(db.engine) as session:
                return await catalog_blocks(session)
        finally:
            await db.dispose()
            await drop_database(url)


def main() -> None:
    DOC.write_text(render(DOC.read_text(), asyncio.run(_generate())))
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
