"""a bulk import declares its import once instead of the lines being kept in a transition table

Migration 0019 checked new statement lines once per statement, through a transition table (``REFERENCING NEW TABLE``):
PostgreSQL keeps every inserted row in it until the statement ends, and at ten million lines that table alone spilled
about 1.5 GiB of temporary files beside the lines themselves. The check is now per row, but skipped, by the trigger's
``WHEN`` (evaluated in the executor, no function call), for the lines of the one import the transaction declared
through ``statement_entry_declare_import(import, agency)``: the function checks and locks that import, as the
statement trigger did, and records it in two transaction-local settings. Every other line (another import, another
agency, or no declaration: lines written one by one) goes through the same per-row check as before, so the integrity
is unchanged: a line names an existing import of its own agency. SQLite is unchanged (its checks were per row).

Revision ID: 0021_statement_lines_declared
Revises: 0020_document_buyer
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021_statement_lines_declared"
down_revision: str | None = "0020_document_buyer"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHECK_ROW = """
    CREATE OR REPLACE FUNCTION statement_entry_check_imports() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        -- Locked first, then looked up with a fresh snapshot: a concurrent delete of the import either waits for
        -- this transaction or is seen here.
        PERFORM 1 FROM statement_import i WHERE i.id = NEW.import_id AND i.agency_id = NEW.agency_id FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'statement_entry: import % does not exist for the line''s agency', NEW.import_id
                USING ERRCODE = 'foreign_key_violation', TABLE = 'statement_entry';
        END IF;
        RETURN NULL;
    END $$
"""
_DECLARE = """
    CREATE FUNCTION statement_entry_declare_import(import text, agency text) RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM 1 FROM statement_import i WHERE i.id = import AND i.agency_id = agency FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'statement_entry: import % does not exist for agency %', import, agency
                USING ERRCODE = 'foreign_key_violation', TABLE = 'statement_entry';
        END IF;
        PERFORM set_config('lephi.statement_import', import, true);
        PERFORM set_config('lephi.statement_agency', agency, true);
    END $$
"""
_PER_ROW = """
    CREATE TRIGGER statement_entry_check_insert AFTER INSERT ON statement_entry FOR EACH ROW
    WHEN (NEW.import_id IS DISTINCT FROM current_setting('lephi.statement_import', true)
          OR NEW.agency_id IS DISTINCT FROM current_setting('lephi.statement_agency', true))
    EXECUTE FUNCTION statement_entry_check_imports()
"""
# As 0019 left them.
_CHECK_0019 = """
    CREATE OR REPLACE FUNCTION statement_entry_check_imports() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        missing text;
    BEGIN
        IF TG_LEVEL = 'ROW' THEN
            PERFORM 1 FROM statement_import i WHERE i.id = NEW.import_id AND i.agency_id = NEW.agency_id
            FOR KEY SHARE;
            missing := CASE WHEN NOT FOUND THEN NEW.import_id END;
        ELSE
            PERFORM 1 FROM statement_import i WHERE i.id IN (SELECT DISTINCT a.import_id FROM added a)
            FOR KEY SHARE;
            SELECT n.import_id INTO missing
            FROM (SELECT DISTINCT a.import_id, a.agency_id FROM added a) n
            WHERE NOT EXISTS (
                SELECT 1 FROM statement_import i WHERE i.id = n.import_id AND i.agency_id = n.agency_id
            )
            LIMIT 1;
        END IF;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'statement_entry: import % does not exist for the line''s agency', missing
                USING ERRCODE = 'foreign_key_violation', TABLE = 'statement_entry';
        END IF;
        RETURN NULL;
    END $$
"""
_PER_STATEMENT = """
    CREATE TRIGGER statement_entry_check_imports AFTER INSERT ON statement_entry
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION statement_entry_check_imports()
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER statement_entry_check_imports ON statement_entry")
    op.execute(_CHECK_ROW)
    op.execute(_DECLARE)
    op.execute(_PER_ROW)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER statement_entry_check_insert ON statement_entry")
    op.execute("DROP FUNCTION statement_entry_declare_import(text, text)")
    op.execute(_CHECK_0019)
    op.execute(_PER_STATEMENT)
