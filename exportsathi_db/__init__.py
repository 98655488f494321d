"""exportsathi_db: the async PostgreSQL persistence layer of ExportSathi.

Nothing connects to a database or reads the environment at import time.
"""

from exportsathi_db.config import Settings, get_settings
from exportsathi_db.database import DatabaseConnection, check_db_connection, db_connection
from exportsathi_db.dependencies import (
    DbSession,
    ReadDbSession,
    add_error_handlers,
    get_db,
    get_read_db,
)
from exportsathi_db.errors import (
    AlreadyExistsError,
    ConfigurationError,
    ConflictError,
    DatabaseUnavailableError,
    ExportSathiDBError,
    InvalidDataError,
    NotFoundError,
    PoolTimeoutError,
    QueryTimeoutError,
    ReadOnlyError,
)
from exportsathi_db.migrations import drop_db, init_db
from exportsathi_db.models import (
    ActionPlanProgress,
    Base,
    BusinessType,
    CertificationProgress,
    CertificationStatus,
    ChatMessage,
    ChatSession,
    CompanySize,
    FinanceAnalysis,
    GeneratedDocument,
    LogisticsAnalysis,
    MessageRole,
    Report,
    ReportStatus,
    User,
    UserMetrics,
)

__all__ = [
    "ActionPlanProgress",
    "AlreadyExistsError",
    "Base",
    "BusinessType",
    "CertificationProgress",
    "CertificationStatus",
    "ChatMessage",
    "ChatSession",
    "CompanySize",
    "ConfigurationError",
    "ConflictError",
    "DatabaseConnection",
    "DatabaseUnavailableError",
    "DbSession",
    "ExportSathiDBError",
    "FinanceAnalysis",
    "GeneratedDocument",
    "InvalidDataError",
    "LogisticsAnalysis",
    "MessageRole",
    "NotFoundError",
    "PoolTimeoutError",
    "QueryTimeoutError",
    "ReadDbSession",
    "ReadOnlyError",
    "Report",
    "ReportStatus",
    "Settings",
    "User",
    "UserMetrics",
    "add_error_handlers",
    "check_db_connection",
    "db_connection",
    "drop_db",
    "get_db",
    "get_read_db",
    "get_settings",
    "init_db",
]
