"""Row-level security, as migration operations.

Policy: a row is visible and writable when its `tenant_id` equals the transaction-local
`app.tenant_id`, or when the transaction runs in the audited system context. An unset custom
setting reads back as '' (not NULL) once touched, hence NULLIF before the cast. RLS is both
ENABLED and FORCED so the table owner is held to it too (superusers never are: do not run the
app as one).
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

HELPER_FUNCTIONS_SQL = """
CREATE OR REPLACE FUNCTION darkroom_current_tenant() RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::bigint $$;
CREATE OR REPLACE FUNCTION darkroom_is_system() RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT coalesce(current_setting('app.system_context', true), '') = 'on' $$;
"""
DROP_HELPER_FUNCTIONS_SQL = """
DROP FUNCTION IF EXISTS darkroom_current_tenant();
DROP FUNCTION IF EXISTS darkroom_is_system();
"""
TENANT_PREDICATE = "(darkroom_is_system() OR tenant_id = darkroom_current_tenant())"


def enable_rls_sql(table: str, *, allow_untenanted_insert: bool = False) -> list[str]:
    statements = [
        f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY',
        f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY',
        f'CREATE POLICY tenant_isolation ON "{table}" USING {TENANT_PREDICATE} WITH CHECK {TENANT_PREDICATE}',
    ]
    if allow_untenanted_insert:
        statements.append(f'CREATE POLICY untenanted_insert ON "{table}" FOR INSERT WITH CHECK (tenant_id IS NULL)')
    return statements


def disable_rls_sql(table: str) -> list[str]:
    return [
        f'DROP POLICY IF EXISTS untenanted_insert ON "{table}"',
        f'DROP POLICY IF EXISTS tenant_isolation ON "{table}"',
        f'ALTER TABLE "{table}" NO FORCE ROW LEVEL SECURITY',
        f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY',
    ]


class EnableTenantRLS(migrations.operations.base.Operation):
    """Enable + force RLS with the tenant policy on a model's table (use in every tenant app)."""

    reversible = True
    reduces_to_sql = True

    def __init__(self, model_name: str, *, allow_untenanted_insert: bool = False) -> None:
        self.model_name = model_name
        self.allow_untenanted_insert = allow_untenanted_insert

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass

    def _table(self, app_label: str, state: Any) -> str:
        return str(state.apps.get_model(app_label, self.model_name)._meta.db_table)

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        table = self._table(app_label, to_state)
        for statement in enable_rls_sql(table, allow_untenanted_insert=self.allow_untenanted_insert):
            schema_editor.execute(statement)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        for statement in disable_rls_sql(self._table(app_label, from_state)):
            schema_editor.execute(statement)

    def describe(self) -> str:
        return f"Enable tenant row-level security on {self.model_name}"

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        kwargs: dict[str, Any] = {}
        if self.allow_untenanted_insert:
            kwargs["allow_untenanted_insert"] = True
        return (self.__class__.__qualname__, [self.model_name], kwargs)
