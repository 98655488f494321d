"""Realistic demo data (Indian MSME exporters) streamed into the tables with COPY.

`python -m exportsathi_db seed --rows 10000` fills about that many rows of reports plus
chat messages (a tenth reports), with users, metrics, certifications, documents, 7-day plans
and chat sessions around them. Rows are generated lazily, so memory stays flat at any scale.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from tqdm import tqdm

from exportsathi_db.models import new_id

PRODUCTS = [  # (product, HS code, business type)
    ("Organic turmeric powder", "0910.30", "Manufacturing"),
    ("Basmati rice", "1006.30", "Merchant"),
    ("Cotton knitted T-shirts", "6109.10", "Manufacturing"),
    ("Leather footwear", "6403.99", "Manufacturing"),
    ("Brass handicrafts", "7419.80", "Manufacturing"),
    ("Darjeeling black tea", "0902.30", "Merchant"),
    ("Cashew kernels W320", "0801.32", "Merchant"),
    ("Handloom cotton sarees", "5208.52", "Manufacturing"),
    ("Ayurvedic herbal supplements", "3004.90", "Manufacturing"),
    ("Frozen vannamei shrimp", "0306.17", "Merchant"),
    ("Jute shopping bags", "6305.10", "Manufacturing"),
    ("Glazed ceramic tiles", "6907.21", "Manufacturing"),
    ("Agarbatti incense sticks", "3307.41", "Manufacturing"),
    ("Hand-knotted woollen carpets", "5701.10", "Manufacturing"),
    ("Alphonso mango pulp", "2007.99", "Merchant"),
    ("Export invoicing SaaS", "9983.14", "SaaS"),
]
DESTINATIONS = [
    "United States",
    "United Arab Emirates",
    "United Kingdom",
    "Germany",
    "Netherlands",
    "Bangladesh",
    "Saudi Arabia",
    "Singapore",
    "Australia",
    "Japan",
]
CERTIFICATIONS = [
    ("FDA", "US FDA food facility registration", "regulatory"),
    ("CE", "CE marking", "conformity"),
    ("REACH", "EU REACH registration", "chemical"),
    ("BIS", "BIS certification", "quality"),
    ("ZED", "ZED certification", "msme"),
    ("SOFTEX", "SOFTEX form filing", "software"),
    ("FSSAI", "FSSAI licence", "food"),
    ("APEDA", "APEDA RCMC", "export"),
    ("IEC", "Import Export Code", "export"),
    ("ISO9001", "ISO 9001:2015", "quality"),
]
DOCUMENTS = [
    "commercial_invoice",
    "packing_list",
    "shipping_bill",
    "certificate_of_origin",
    "bill_of_lading",
]
QUESTIONS = [
    "Which certifications does my product need for {c}?",
    "How long does RoDTEP credit take to arrive?",
    "Should I ship LCL or FCL?",
    "What is the GST refund process for exports?",
    "Explain the 7-day plan for day 3.",
]
FULL_EVERY = 10  # one report in ten gets certifications, documents and a full 7-day plan


@dataclass(frozen=True)
class SeedSummary:
    rows: dict[str, int]


class _Plan:
    """Deterministic generators for every table; ids are shared through small lists."""

    def __init__(self, rows: int, rng: random.Random) -> None:
        self.rng = rng
        self.reports = max(rows // 10, 1)
        self.messages = max(rows - self.reports, 0)
        self.users = max(self.reports // 20, 1)
        self.sessions = max(self.reports // 2, 1)
        self.start = datetime(2026, 1, 1, tzinfo=UTC)
        self.user_ids = [new_id() for _ in range(self.users)]
        self.tag = self.user_ids[0].hex[-8:]  # keeps emails unique across seed runs
        self.report_owner: list[tuple[Any, Any, int]] = []  # (report id, user id, product)

    def _when(self, i: int, total: int) -> datetime:
        return self.start + timedelta(seconds=i * 300 * 24 * 3600 // max(total, 1))

    def users_rows(self) -> Iterator[tuple[Any, ...]]:
        for i, uid in enumerate(self.user_ids):
            _, _, kind = PRODUCTS[i % len(PRODUCTS)]
            yield (
                uid,
                f"exporter{i}.{self.tag}@msme.example.in",
                "$2b$12$" + "x" * 53,
                kind,
                self.rng.choice(["Micro", "Small", "Medium"]),
                f"Exporter {i} Pvt Ltd",
                self.rng.randint(50, 5000),
                self._when(i, self.users),
            )

    def reports_rows(self) -> Iterator[tuple[Any, ...]]:
        for i in range(self.reports):
            rid, uid, p = new_id(), self.user_ids[i % self.users], i % len(PRODUCTS)
            product, hs, kind = PRODUCTS[p]
            dest = DESTINATIONS[i % len(DESTINATIONS)]
            data = {
                "product": product,
                "hs_code": hs,
                "destination": dest,
                "summary": f"{product} to {dest}: documentation and certification roadmap",
                "risks": ["labelling", "residue limits"],
                "score": i % 100,
            }
            self.report_owner.append((rid, uid, p))
            yield (
                rid,
                uid,
                product,
                dest,
                kind,
                "Small",
                hs,
                round(self.rng.uniform(60, 99), 2),
                i % 101,
                json.dumps(data),
                "completed",
                self._when(i, self.reports),
            )

    def children(self) -> Iterator[tuple[str, tuple[Any, ...]]]:
        for i, (rid, uid, _) in enumerate(self.report_owner):
            if i % FULL_EVERY:
                continue
            for cid, name, kind in CERTIFICATIONS:
                yield "cert", (new_id(), uid, rid, cid, name, kind, "in_progress", "[]")
            for doc in DOCUMENTS:
                yield "doc", (new_id(), uid, rid, doc, json.dumps({"type": doc}), True)
            for day in range(1, 8):
                for t in range(3):
                    yield (
                        "task",
                        (
                            new_id(),
                            uid,
                            rid,
                            f"d{day}-t{t}",
                            day,
                            f"Day {day} task {t + 1}",
                            day < 3,
                        ),
                    )

    def sessions_rows(self) -> Iterator[tuple[Any, ...]]:
        for i in range(self.sessions):
            rid, uid, _ = self.report_owner[i % len(self.report_owner)]
            yield (new_id(), uid, rid, None, self._when(i, self.sessions))

    def messages_rows(self, session_ids: list[Any]) -> Iterator[tuple[Any, ...]]:
        for i in range(self.messages):
            sid = session_ids[i % len(session_ids)]
            role = "user" if i % 2 == 0 else "assistant"
            text = self.rng.choice(QUESTIONS).format(c=self.rng.choice(DESTINATIONS))
            content = text if role == "user" else f"Here is what applies: {text.lower()} ..."
            yield (new_id(), sid, role, content, self._when(i, self.messages))


async def _copy(
    conn: Any, table: str, columns: list[str], rows: Iterator[tuple[Any, ...]], bar: tqdm[Any]
) -> int:
    count = 0

    def counted() -> Iterator[tuple[Any, ...]]:
        nonlocal count
        for row in rows:
            count += 1
            if count % 5000 == 0:
                bar.update(5000)
            yield row

    await conn.copy_records_to_table(table, records=counted(), columns=columns)
    bar.update(count % 5000)
    return count


async def seed(
    connection: AsyncConnection, *, rows: int = 10_000, random_seed: int = 42, progress: bool = True
) -> SeedSummary:
    """Stream about `rows` rows of reports + chat messages (and what surrounds them)."""
    plan = _Plan(rows, random.Random(random_seed))  # noqa: S311 (demo data, not secrets)
    raw = (await connection.get_raw_connection()).driver_connection
    assert raw is not None
    done: dict[str, int] = {}
    total = plan.users + plan.reports * 2 + plan.sessions + plan.messages
    total += (plan.reports // FULL_EVERY + 1) * (len(CERTIFICATIONS) + len(DOCUMENTS) + 21)
    with tqdm(total=total, unit="rows", disable=not progress, desc="seeding") as bar:
        done["users"] = await _copy(
            raw,
            "users",
            [
                "id",
                "email",
                "password_hash",
                "business_type",
                "company_size",
                "company_name",
                "monthly_volume",
                "created_at",
            ],
            plan.users_rows(),
            bar,
        )
        done["reports"] = await _copy(
            raw,
            "reports",
            [
                "id",
                "user_id",
                "product_name",
                "destination_country",
                "business_type",
                "company_size",
                "hs_code",
                "hs_code_confidence",
                "risk_score",
                "report_data",
                "status",
                "created_at",
            ],
            plan.reports_rows(),
            bar,
        )
        done.update(await _copy_children(raw, plan, bar))
        session_ids: list[Any] = []

        def sessions() -> Iterator[tuple[Any, ...]]:
            for row in plan.sessions_rows():
                session_ids.append(row[0])
                yield row

        done["chat_sessions"] = await _copy(
            raw,
            "chat_sessions",
            ["id", "user_id", "report_id", "expires_at", "last_activity"],
            sessions(),
            bar,
        )
        done["chat_messages"] = await _copy(
            raw,
            "chat_messages",
            ["id", "session_id", "role", "content", "created_at"],
            plan.messages_rows(session_ids),
            bar,
        )
        await raw.execute(
            """
            INSERT INTO user_metrics
                (user_id, reports_generated, documents_generated, certifications_completed)
            SELECT u.id,
                (SELECT count(*) FROM reports r WHERE r.user_id = u.id),
                (SELECT count(*) FROM generated_documents d WHERE d.user_id = u.id),
                (SELECT count(*) FROM certification_progress c
                  WHERE c.user_id = u.id AND c.status = 'completed')
            FROM users u WHERE u.id = ANY($1::uuid[])
            ON CONFLICT (user_id) DO UPDATE SET
                reports_generated = excluded.reports_generated,
                documents_generated = excluded.documents_generated,
                certifications_completed = excluded.certifications_completed
            """,
            plan.user_ids,
        )
        bar.update(plan.reports)
        bar.total = bar.n  # the total was an estimate: end the bar at 100%, not at 99%
        bar.refresh()
    await raw.execute("ANALYZE")
    return SeedSummary(done)


async def _copy_children(raw: Any, plan: _Plan, bar: tqdm[Any]) -> dict[str, int]:
    """Certifications, documents and plan tasks for every FULL_EVERY-th report, one COPY each."""
    groups: dict[str, list[tuple[Any, ...]]] = {"cert": [], "doc": [], "task": []}
    counts = {"certification_progress": 0, "generated_documents": 0, "action_plan_progress": 0}
    columns = {
        "cert": (
            "certification_progress",
            [
                "id",
                "user_id",
                "report_id",
                "certification_id",
                "certification_name",
                "certification_type",
                "status",
                "documents_completed",
            ],
        ),
        "doc": (
            "generated_documents",
            ["id", "user_id", "report_id", "document_type", "document_data", "is_valid"],
        ),
        "task": (
            "action_plan_progress",
            ["id", "user_id", "report_id", "task_id", "day_number", "task_title", "completed"],
        ),
    }

    async def flush() -> None:
        for kind, rows in groups.items():
            if rows:
                table, cols = columns[kind]
                counts[table] += await _copy(raw, table, cols, iter(rows), bar)
                rows.clear()

    for kind, row in plan.children():
        groups[kind].append(row)
        if len(groups[kind]) >= 20_000:
            await flush()
    await flush()
    return counts
