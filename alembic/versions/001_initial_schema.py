"""initial schema

Revision ID: 001
Revises:
Create Date: 2026-11-24

The ten tables of SCHEMA.md, their indexes and checks, and the updated_at trigger.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

# Tables whose updated_at the shared trigger moves on every UPDATE, whoever runs it.
UPDATED_AT_TABLES = (
    "users",
    "reports",
    "certification_progress",
    "generated_documents",
    "action_plan_progress",
    "finance_analysis",
    "logistics_analysis",
    "user_metrics",
)

revision: str = "001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("business_type", sa.String(length=50), nullable=False),
        sa.Column("company_size", sa.String(length=50), nullable=False),
        sa.Column("company_name", sa.String(length=255), nullable=True),
        sa.Column("monthly_volume", sa.Integer(), nullable=True),
        sa.Column("last_login", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "business_type IN ('Manufacturing', 'SaaS', 'Merchant')",
            name=op.f("ck_users_business_type"),
        ),
        sa.CheckConstraint(
            "company_size IN ('Micro', 'Small', 'Medium')", name=op.f("ck_users_company_size")
        ),
        sa.CheckConstraint(
            "monthly_volume >= 0", name=op.f("ck_users_monthly_volume_non_negative")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
    )
    op.create_index(op.f("ix_users_business_type"), "users", ["business_type"], unique=False)
    op.create_index(
        "uq_users_lower_email", "users", [sa.literal_column("lower(email)")], unique=True
    )
    op.create_table(
        "reports",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("product_name", sa.String(length=255), nullable=False),
        sa.Column("product_image_url", sa.String(length=500), nullable=True),
        sa.Column("ingredients", sa.Text(), nullable=True),
        sa.Column("bom", sa.Text(), nullable=True),
        sa.Column("destination_country", sa.String(length=100), nullable=False),
        sa.Column("business_type", sa.String(length=50), nullable=False),
        sa.Column("company_size", sa.String(length=50), nullable=False),
        sa.Column("monthly_volume", sa.Integer(), nullable=True),
        sa.Column("price_range", sa.String(length=100), nullable=True),
        sa.Column("payment_mode", sa.String(length=100), nullable=True),
        sa.Column("hs_code", sa.String(length=20), nullable=True),
        sa.Column("hs_code_confidence", sa.Numeric(precision=5, scale=2), nullable=True),
        sa.Column("risk_score", sa.Integer(), nullable=True),
        sa.Column("estimated_cost", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("estimated_timeline_days", sa.Integer(), nullable=True),
        sa.Column("report_data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=50), server_default="completed", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "business_type IN ('Manufacturing', 'SaaS', 'Merchant')",
            name=op.f("ck_reports_business_type"),
        ),
        sa.CheckConstraint(
            "company_size IN ('Micro', 'Small', 'Medium')", name=op.f("ck_reports_company_size")
        ),
        sa.CheckConstraint(
            "status IN ('processing', 'completed', 'failed')", name=op.f("ck_reports_status")
        ),
        sa.CheckConstraint(
            "hs_code_confidence BETWEEN 0 AND 100", name=op.f("ck_reports_hs_code_confidence_range")
        ),
        sa.CheckConstraint(
            "monthly_volume >= 0 AND estimated_cost >= 0 AND estimated_timeline_days >= 0",
            name=op.f("ck_reports_non_negative"),
        ),
        sa.CheckConstraint(
            "risk_score BETWEEN 0 AND 100", name=op.f("ck_reports_risk_score_range")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_reports_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reports")),
    )
    op.create_index(
        "ix_reports_created_at", "reports", [sa.literal_column("created_at DESC")], unique=False
    )
    op.create_index(
        op.f("ix_reports_destination_country"), "reports", ["destination_country"], unique=False
    )
    op.create_index(op.f("ix_reports_hs_code"), "reports", ["hs_code"], unique=False)
    op.create_index(op.f("ix_reports_user_id"), "reports", ["user_id"], unique=False)
    op.create_index(
        "ix_reports_user_id_created_at",
        "reports",
        ["user_id", sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
        unique=False,
    )
    op.create_table(
        "user_metrics",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("reports_generated", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "certifications_completed", sa.Integer(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column("documents_generated", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("exports_completed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "cost_savings",
            sa.Numeric(precision=12, scale=2),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "timeline_reduction_days", sa.Integer(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column("last_export_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "reports_generated >= 0 AND certifications_completed >= 0 AND documents_generated >= 0 AND exports_completed >= 0 AND cost_savings >= 0 AND timeline_reduction_days >= 0",
            name=op.f("ck_user_metrics_counters_non_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_metrics_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_metrics")),
        sa.UniqueConstraint("user_id", name=op.f("uq_user_metrics_user_id")),
    )
    op.create_table(
        "action_plan_progress",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("report_id", sa.UUID(), nullable=False),
        sa.Column("task_id", sa.String(length=100), nullable=False),
        sa.Column("day_number", sa.Integer(), nullable=False),
        sa.Column("task_title", sa.String(length=255), nullable=False),
        sa.Column("task_description", sa.Text(), nullable=True),
        sa.Column("task_category", sa.String(length=50), nullable=True),
        sa.Column("completed", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "day_number BETWEEN 1 AND 7", name=op.f("ck_action_plan_progress_day_number_range")
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["reports.id"],
            name=op.f("fk_action_plan_progress_report_id_reports"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_action_plan_progress_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_action_plan_progress")),
        sa.UniqueConstraint(
            "report_id", "task_id", name=op.f("uq_action_plan_progress_report_id_task_id")
        ),
    )
    op.create_index(
        op.f("ix_action_plan_progress_completed"),
        "action_plan_progress",
        ["completed"],
        unique=False,
    )
    op.create_index(
        op.f("ix_action_plan_progress_report_id"),
        "action_plan_progress",
        ["report_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_action_plan_progress_user_id"), "action_plan_progress", ["user_id"], unique=False
    )
    op.create_table(
        "certification_progress",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("report_id", sa.UUID(), nullable=False),
        sa.Column("certification_id", sa.String(length=100), nullable=False),
        sa.Column("certification_name", sa.String(length=255), nullable=False),
        sa.Column("certification_type", sa.String(length=50), nullable=False),
        sa.Column("status", sa.String(length=50), server_default="not_started", nullable=False),
        sa.Column(
            "documents_completed",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('not_started', 'in_progress', 'completed', 'rejected')",
            name=op.f("ck_certification_progress_status"),
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["reports.id"],
            name=op.f("fk_certification_progress_report_id_reports"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_certification_progress_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certification_progress")),
    )
    op.create_index(
        op.f("ix_certification_progress_report_id"),
        "certification_progress",
        ["report_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_certification_progress_status"), "certification_progress", ["status"], unique=False
    )
    op.create_index(
        op.f("ix_certification_progress_user_id"),
        "certification_progress",
        ["user_id"],
        unique=False,
    )
    op.create_table(
        "chat_sessions",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("report_id", sa.UUID(), nullable=True),
        sa.Column("context_data", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "last_activity",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["reports.id"],
            name=op.f("fk_chat_sessions_report_id_reports"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_chat_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_sessions")),
    )
    op.create_index(
        op.f("ix_chat_sessions_expires_at"), "chat_sessions", ["expires_at"], unique=False
    )
    op.create_index(
        op.f("ix_chat_sessions_report_id"), "chat_sessions", ["report_id"], unique=False
    )
    op.create_index(op.f("ix_chat_sessions_user_id"), "chat_sessions", ["user_id"], unique=False)
    op.create_table(
        "finance_analysis",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("report_id", sa.UUID(), nullable=False),
        sa.Column("working_capital_data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "pre_shipment_credit_data", postgresql.JSONB(astext_type=sa.Text()), nullable=True
        ),
        sa.Column("rodtep_benefit_data", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("gst_refund_data", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("cash_flow_timeline", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("financing_options", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["reports.id"],
            name=op.f("fk_finance_analysis_report_id_reports"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_finance_analysis_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finance_analysis")),
        sa.UniqueConstraint("report_id", name=op.f("uq_finance_analysis_report_id")),
    )
    op.create_index(
        op.f("ix_finance_analysis_user_id"), "finance_analysis", ["user_id"], unique=False
    )
    op.create_table(
        "generated_documents",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("report_id", sa.UUID(), nullable=False),
        sa.Column("document_type", sa.String(length=100), nullable=False),
        sa.Column("document_data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("pdf_url", sa.String(length=500), nullable=True),
        sa.Column("editable_url", sa.String(length=500), nullable=True),
        sa.Column("validation_results", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("is_valid", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["reports.id"],
            name=op.f("fk_generated_documents_report_id_reports"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_generated_documents_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_generated_documents")),
    )
    op.create_index(
        op.f("ix_generated_documents_document_type"),
        "generated_documents",
        ["document_type"],
        unique=False,
    )
    op.create_index(
        op.f("ix_generated_documents_report_id"), "generated_documents", ["report_id"], unique=False
    )
    op.create_index(
        op.f("ix_generated_documents_user_id"), "generated_documents", ["user_id"], unique=False
    )
    op.create_table(
        "logistics_analysis",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("report_id", sa.UUID(), nullable=False),
        sa.Column("lcl_fcl_comparison", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("rms_probability_data", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("route_analysis", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("freight_estimate", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "insurance_recommendation", postgresql.JSONB(astext_type=sa.Text()), nullable=True
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["reports.id"],
            name=op.f("fk_logistics_analysis_report_id_reports"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_logistics_analysis_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_logistics_analysis")),
        sa.UniqueConstraint("report_id", name=op.f("uq_logistics_analysis_report_id")),
    )
    op.create_index(
        op.f("ix_logistics_analysis_user_id"), "logistics_analysis", ["user_id"], unique=False
    )
    op.create_table(
        "chat_messages",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("session_id", sa.UUID(), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("sources", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("role IN ('user', 'assistant')", name=op.f("ck_chat_messages_role")),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["chat_sessions.id"],
            name=op.f("fk_chat_messages_session_id_chat_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_messages")),
    )
    op.create_index(
        op.f("ix_chat_messages_created_at"), "chat_messages", ["created_at"], unique=False
    )
    op.create_index(
        op.f("ix_chat_messages_session_id"), "chat_messages", ["session_id"], unique=False
    )
    op.create_index(
        "ix_chat_messages_session_id_created_at",
        "chat_messages",
        ["session_id", "created_at", "id"],
        unique=False,
    )
    op.execute(
        """
        CREATE FUNCTION set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.updated_at = now();
            RETURN NEW;
        END;
        $$
        """
    )
    for table in UPDATED_AT_TABLES:
        op.execute(
            f"CREATE TRIGGER trg_{table}_updated_at BEFORE UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION set_updated_at()"
        )


def downgrade() -> None:
    for table in UPDATED_AT_TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_updated_at ON {table}")
    op.execute("DROP FUNCTION IF EXISTS set_updated_at()")
    op.drop_index("ix_chat_messages_session_id_created_at", table_name="chat_messages")
    op.drop_index(op.f("ix_chat_messages_session_id"), table_name="chat_messages")
    op.drop_index(op.f("ix_chat_messages_created_at"), table_name="chat_messages")
    op.drop_table("chat_messages")
    op.drop_index(op.f("ix_logistics_analysis_user_id"), table_name="logistics_analysis")
    op.drop_table("logistics_analysis")
    op.drop_index(op.f("ix_generated_documents_user_id"), table_name="generated_documents")
    op.drop_index(op.f("ix_generated_documents_report_id"), table_name="generated_documents")
    op.drop_index(op.f("ix_generated_documents_document_type"), table_name="generated_documents")
    op.drop_table("generated_documents")
    op.drop_index(op.f("ix_finance_analysis_user_id"), table_name="finance_analysis")
    op.drop_table("finance_analysis")
    op.drop_index(op.f("ix_chat_sessions_user_id"), table_name="chat_sessions")
    op.drop_index(op.f("ix_chat_sessions_report_id"), table_name="chat_sessions")
    op.drop_index(op.f("ix_chat_sessions_expires_at"), table_name="chat_sessions")
    op.drop_table("chat_sessions")
    op.drop_index(op.f("ix_certification_progress_user_id"), table_name="certification_progress")
    op.drop_index(op.f("ix_certification_progress_status"), table_name="certification_progress")
    op.drop_index(op.f("ix_certification_progress_report_id"), table_name="certification_progress")
    op.drop_table("certification_progress")
    op.drop_index(op.f("ix_action_plan_progress_user_id"), table_name="action_plan_progress")
    op.drop_index(op.f("ix_action_plan_progress_report_id"), table_name="action_plan_progress")
    op.drop_index(op.f("ix_action_plan_progress_completed"), table_name="action_plan_progress")
    op.drop_table("action_plan_progress")
    op.drop_table("user_metrics")
    op.drop_index("ix_reports_user_id_created_at", table_name="reports")
    op.drop_index(op.f("ix_reports_user_id"), table_name="reports")
    op.drop_index(op.f("ix_reports_hs_code"), table_name="reports")
    op.drop_index(op.f("ix_reports_destination_country"), table_name="reports")
    op.drop_index("ix_reports_created_at", table_name="reports")
    op.drop_table("reports")
    op.drop_index("uq_users_lower_email", table_name="users")
    op.drop_index(op.f("ix_users_business_type"), table_name="users")
    op.drop_table("users")
