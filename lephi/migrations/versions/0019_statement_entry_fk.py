"""statement lines keep their import and agency by triggers instead of foreign keys

PostgreSQL checks a foreign key with one query per inserted row: at a million statement lines that was about a third
of the import's set-based insert. The two foreign keys of ``statement_entry`` (agency, import) are replaced by the
same integrity, enforced once per statement where the lines come in:

- inserting lines: one statement-level trigger locks the imports the new lines name (``FOR KEY SHARE``, as a
  foreign key's check does, so that an import deleted meanwhile is seen as gone) and refuses the statement if a line
  names an import that does not exist, or one of another agency (stricter than before: the agency followed from
  nothing). Changing a line's import or agency is checked per row (nothing in the product does it);
- deleting an import that still has lines, or changing its id or agency, is refused, as the foreign key's default
  (NO ACTION) refused it. An agency keeps its lines through its imports: ``statement_import.agency_id`` is still a
  foreign key, and a line's import is of the line's agency.

Both refusals raise SQLSTATE 23503 (foreign_key_violation) on PostgreSQL and a constraint error on SQLite, so callers
see the integrity error they saw before. SQLite checked foreign keys per row and does the same with its triggers.

Revision ID: 0019_statement_entry_fk
Revises: 0018_receipt_series
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_statement_entry_fk"
down_revision: str | None = "0018_receipt_series"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite stores its foreign keys unnamed: batch mode names them by this convention to drop them.
_SQLITE_NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s"}
_REFERENCES = (("agency_id", "agency"), ("import_id", "statement_import"))

# Lines whose import is missing or of another agency: none may exist before the foreign keys go.
_ORPHANS = """
    SELECT count(*) FROM statement_entry e
    WHERE NOT EXISTS (SELECT 1 FROM statement_import i WHERE i.id = e.import_id AND i.agency_id = e.agency_id)
"""

_PG_UP = [
    """
    CREATE FUNCTION statement_entry_check_imports() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        missing text;
    BEGIN
        -- Locked first, then looked up with a fresh snapshot: a concurrent delete of the import either waits for
        -- this transaction or is seen here. Per statement on insert (the new lines are the table "added"), per row
        -- when a line is moved.
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
    """,
    """
    CREATE FUNCTION statement_import_keep_lines() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (SELECT 1 FROM statement_entry e WHERE e.agency_id = OLD.agency_id AND e.import_id = OLD.id) THEN
            RAISE EXCEPTION 'statement_import: import % still has statement lines', OLD.id
                USING ERRCODE = 'foreign_key_violation', TABLE = 'statement_import';
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER statement_entry_check_imports AFTER INSERT ON statement_entry
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION statement_entry_check_imports()
    """,
    """
    CREATE TRIGGER statement_entry_check_import AFTER UPDATE OF agency_id, import_id ON statement_entry
    FOR EACH ROW WHEN (OLD.agency_id IS DISTINCT FROM NEW.agency_id OR OLD.import_id IS DISTINCT FROM NEW.import_id)
    EXECUTE FUNCTION statement_entry_check_imports()
    """,
    """
    CREATE TRIGGER statement_import_keep_lines_delete AFTER DELETE ON statement_import
    FOR EACH ROW EXECUTE FUNCTION statement_import_keep_lines()
    """,
    """
    CREATE TRIGGER statement_import_keep_lines_update AFTER UPDATE OF id, agency_id ON statement_import
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id OR OLD.agency_id IS DISTINCT FROM NEW.agency_id)
    EXECUTE FUNCTION statement_import_keep_lines()
    """,
]
_PG_DOWN = [
    "DROP TRIGGER statement_import_keep_lines_update ON statement_import",
    "DROP TRIGGER statement_import_keep_lines_delete ON statement_import",
    "DROP TRIGGER statement_entry_check_import ON statement_entry",
    "DROP TRIGGER statement_entry_check_imports ON statement_entry",
    "DROP FUNCTION statement_import_keep_lines()",
    "DROP FUNCTION statement_entry_check_imports()",
]

# SQLite raises a constraint error (IntegrityError) from RAISE(ABORT), as from a failed foreign key.
_SQLITE_MISSING = (
    "NOT EXISTS (SELECT 1 FROM statement_import i WHERE i.id = NEW.import_id AND i.agency_id = NEW.agency_id)"
)
_SQLITE_HAS_LINES = (
    "EXISTS (SELECT 1 FROM statement_entry e WHERE e.agency_id = OLD.agency_id AND e.import_id = OLD.id)"
)
_SQLITE_REFUSE_ENTRY = "SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: statement_entry.import_id')"
_SQLITE_REFUSE_IMPORT = "SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: statement_import has statement lines')"
_SQLITE_UP = [
    f"""
    CREATE TRIGGER statement_entry_check_insert BEFORE INSERT ON statement_entry WHEN {_SQLITE_MISSING}
    BEGIN {_SQLITE_REFUSE_ENTRY}; END
    """,
    f"""
    CREATE TRIGGER statement_entry_check_update BEFORE UPDATE OF agency_id, import_id ON statement_entry
    WHEN {_SQLITE_MISSING}
    BEGIN {_SQLITE_REFUSE_ENTRY}; END
    """,
    f"""
    CREATE TRIGGER statement_import_keep_lines_delete BEFORE DELETE ON statement_import WHEN {_SQLITE_HAS_LINES}
    BEGIN {_SQLITE_REFUSE_IMPORT}; END
    """,
    f"""
    CREATE TRIGGER statement_import_keep_lines_update BEFORE UPDATE OF id, agency_id ON statement_import
    WHEN (OLD.id IS NOT NEW.id OR OLD.agency_id IS NOT NEW.agency_id) AND {_SQLITE_HAS_LINES}
    BEGIN {_SQLITE_REFUSE_IMPORT}; END
    """,
]
_SQLITE_DOWN = [
    "DROP TRIGGER statement_import_keep_lines_update",
    "DROP TRIGGER statement_import_keep_lines_delete",
    "DROP TRIGGER statement_entry_check_update",
    "DROP TRIGGER statement_entry_check_insert",
]


def upgrade() -> None:
    conn = op.get_bind()
    orphans = conn.execute(sa.text(_ORPHANS)).scalar_one()
    if orphans:
        raise RuntimeError(f"{orphans} statement lines name an import that is missing or of another agency")
    if conn.dialect.name == "sqlite":
        with op.batch_alter_table("statement_entry", naming_convention=_SQLITE_NAMES) as batch_op:
            for column, _ in _REFERENCES:
                batch_op.drop_constraint(f"fk_statement_entry_{column}", type_="foreignkey")
        statements = _SQLITE_UP
    else:
        for fk in sa.inspect(conn).get_foreign_keys("statement_entry"):
            op.drop_constraint(fk["name"], "statement_entry", type_="foreignkey")
        statements = _PG_UP
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    conn = op.get_bind()
    sqlite = conn.dialect.name == "sqlite"
    for statement in _SQLITE_DOWN if sqlite else _PG_DOWN:
        op.execute(statement)
    if sqlite:
        with op.batch_alter_table("statement_entry", naming_convention=_SQLITE_NAMES) as batch_op:
            for column, table in _REFERENCES:
                batch_op.create_foreign_key(f"fk_statement_entry_{column}", table, [column], ["id"])
    else:
        # The names PostgreSQL gave them in 0006.
        for column, table in _REFERENCES:
            op.create_foreign_key(f"statement_entry_{column}_fkey", "statement_entry", table, [column], ["id"])
