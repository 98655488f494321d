"""The enumerated values of the schema's CHECK constraints (plain strings work too)."""

from enum import StrEnum


class BusinessType(StrEnum):
    MANUFACTURING = "Manufacturing"
    SAAS = "SaaS"
    MERCHANT = "Merchant"


class CompanySize(StrEnum):
    MICRO = "Micro"
    SMALL = "Small"
    MEDIUM = "Medium"


class ReportStatus(StrEnum):
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class CertificationStatus(StrEnum):
    NOT_STARTED = "not_started"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    REJECTED = "rejected"


class MessageRole(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


def sql_in(column: str, values: type[StrEnum]) -> str:
    """The body of a CHECK constraint allowing exactly the enum's values."""
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"
