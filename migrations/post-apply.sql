-- Post-apply hook: runs after every deploy that applied something (never recorded).
-- Grants read access to a reporting role when it exists.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'reporting') THEN
        GRANT SELECT ON ALL TABLES IN SCHEMA public TO reporting;
    END IF;
END
$$;
