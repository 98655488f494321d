"""The raw asyncpg baseline's statements: the same SQL, round trips and transactions as the
repositories send (tests/test_benchmarks_smoke.py checks the statement counts match), written
as a careful developer would by hand."""

USER = "id, email, password_hash, business_type, company_size, company_name, monthly_volume, "
USER += "last_login, created_at, updated_at"
REPORT = "id, user_id, product_name, product_image_url, ingredients, bom, destination_country, "
REPORT += "business_type, company_size, monthly_volume, price_range, payment_mode, hs_code, "
REPORT += "hs_code_confidence, risk_score, estimated_cost, estimated_timeline_days, report_data, "
REPORT += "status, created_at, updated_at"
CERTIFICATION = "c.id, c.user_id, c.report_id, c.certification_id, c.certification_name, "
CERTIFICATION += "c.certification_type, c.status, c.documents_completed, c.notes, c.started_at, "
CERTIFICATION += "c.completed_at, c.created_at, c.updated_at"
DOCUMENT = "c.id, c.user_id, c.report_id, c.document_type, c.document_data, c.pdf_url, "
DOCUMENT += "c.editable_url, c.validation_results, c.is_valid, c.created_at, c.updated_at"
TASK = "c.id, c.user_id, c.report_id, c.task_id, c.day_number, c.task_title, "
TASK += "c.task_description, c.task_category, c.completed, c.completed_at, c.created_at, "
TASK += "c.updated_at"
LIVE = "s.id = $1 AND s.user_id = $2 AND (s.expires_at IS NULL OR s.expires_at > now())"
TOUCH = f"""WITH touched AS (
        UPDATE chat_sessions s SET last_activity = now(),
            expires_at = now() + (s.expires_at - s.last_activity)
        WHERE {LIVE} RETURNING s.id)"""

GET_BY_EMAIL = f"SELECT {USER} FROM users WHERE lower(email) = lower($1)"
RECORD_LOGIN = f"UPDATE users SET last_login = now() WHERE id = $1 RETURNING {USER}"
GET_USER = f"SELECT {USER} FROM users WHERE id = $1"
GET_METRICS = "SELECT u.id, m.* FROM users u LEFT JOIN user_metrics m ON m.user_id = u.id "
GET_METRICS += "WHERE u.id = $1"
LIST_REPORTS = f"SELECT {REPORT} FROM reports WHERE user_id = $1 "
LIST_REPORTS += "ORDER BY created_at DESC, id DESC LIMIT $2"
CREATE_REPORT = f"""
    WITH new AS (
        INSERT INTO reports (id, user_id, product_name, destination_country, business_type,
            company_size, monthly_volume, hs_code, risk_score, report_data, status)
        SELECT $1, u.id, $3, $4, u.business_type, u.company_size, u.monthly_volume, $5, $6, $7,
            'completed'
        FROM users u WHERE u.id = $2
        RETURNING {REPORT}
    ), counted AS (
        INSERT INTO user_metrics AS m (id, user_id, reports_generated)
        SELECT $8, new.user_id, 1 FROM new
        ON CONFLICT (user_id) DO UPDATE SET reports_generated = m.reports_generated + 1
    )
    SELECT {REPORT} FROM new"""
GET_FULL = f"""
    SELECT r.*,
        ARRAY(SELECT ROW({CERTIFICATION}) FROM certification_progress c
            WHERE c.report_id = r.id ORDER BY c.id) AS certifications,
        ARRAY(SELECT ROW({DOCUMENT}) FROM generated_documents c
            WHERE c.report_id = r.id ORDER BY c.id) AS documents,
        ARRAY(SELECT ROW({TASK}) FROM action_plan_progress c
            WHERE c.report_id = r.id ORDER BY c.day_number, c.id) AS action_plan
    FROM reports r WHERE r.id = $1 AND r.user_id = $2"""
ADD_MESSAGE = f"""{TOUCH}
    INSERT INTO chat_messages (id, session_id, role, content, sources)
    SELECT $3, touched.id, $4, $5, $6::text::jsonb FROM touched
    RETURNING id, session_id, role, content, sources, created_at"""
ADD_MESSAGES = f"""{TOUCH}
    INSERT INTO chat_messages (id, session_id, role, content, sources)
    SELECT m.id, touched.id, m.role, m.content, m.sources::jsonb
    FROM touched CROSS JOIN unnest($3::uuid[], $4::text[], $5::text[], $6::text[])
        AS m(id, role, content, sources)"""
HISTORY = f"""
    SELECT true, recent.* FROM chat_sessions s LEFT JOIN LATERAL (
        SELECT id, session_id, role, content, sources, created_at FROM chat_messages
        WHERE session_id = s.id ORDER BY created_at DESC, id DESC LIMIT $3) AS recent ON true
    WHERE {LIVE}"""
SAVE_PLAN = """
    INSERT INTO action_plan_progress AS p (id, user_id, report_id, task_id, day_number,
        task_title, task_description, task_category, completed, completed_at)
    SELECT t.id, r.user_id, r.id, t.task_id, t.day_number, t.task_title, t.task_description,
        t.task_category, coalesce(t.completed, false), CASE WHEN t.completed THEN now() END
    FROM reports r CROSS JOIN unnest($1::uuid[], $2::varchar[], $3::int[], $4::varchar[],
        $5::text[], $6::varchar[], $7::boolean[]) AS t(id, task_id, day_number, task_title,
        task_description, task_category, completed)
    WHERE r.id = $8 AND r.user_id = $9
    ON CONFLICT (report_id, task_id) DO UPDATE SET
        day_number = EXCLUDED.day_number, task_title = EXCLUDED.task_title,
        task_description = EXCLUDED.task_description, task_category = EXCLUDED.task_category,
        completed = coalesce(($7::boolean[])[array_position($2::varchar[], EXCLUDED.task_id)],
            p.completed),
        completed_at = CASE ($7::boolean[])[array_position($2::varchar[], EXCLUDED.task_id)]
            WHEN true THEN CASE WHEN p.completed THEN p.completed_at ELSE now() END
            WHEN false THEN NULL ELSE p.completed_at END
    RETURNING *"""
