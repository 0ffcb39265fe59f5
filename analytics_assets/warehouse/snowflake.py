"""The Snowflake backend (snowflake-connector-python): the warehouse as a Snowflake database.

Rows travel the way Snowflake bulk-loads them: each source is a Parquet file (a staged
``ParquetFile`` as is; a frame or an Arrow table written to one first), ``PUT`` to a
temporary stage of the session and loaded by ``COPY INTO`` with a transformation that
names each column (``$1:"name"``, JSON columns through ``PARSE_JSON``), the same statement
``write_pandas`` sends. ``write_pandas`` itself is not used: it creates its stage inside
the call, and DDL in Snowflake commits the open transaction, which would break the
replacement of a partition in one transaction; it also wants a pandas frame, where a
staged Parquet file needs no conversion at all.

* ``replace_partition``: PUT every source first, then ``BEGIN``, ``DELETE`` of the
  partition, ``COPY INTO`` / ``INSERT ... SELECT`` per source, ``COMMIT``.
* ``replace_table``: loaded into a load table, then ``CREATE OR REPLACE TABLE ... COPY
  GRANTS AS SELECT``: one statement, so readers see the old or the new table, and the
  grants analysts' roles hold on it stay.
* ``load_json_lines`` (the raw Amplitude export): the gzipped files are PUT as they are
  and loaded by one ``COPY INTO`` with ``FILE_FORMAT = (TYPE = JSON)`` that selects each
  export field (``$1:"$insert_id"::VARCHAR``, ...), between the partition's ``DELETE``
  and ``COMMIT``. ``FORCE = TRUE``: Snowflake skips files it loaded into the table
  before (by name and checksum), and a re-run of a day loads the same files again.

Identifiers are sent quoted in upper case, which is what Snowflake makes of the unquoted
lower-case names the portable SQL uses; answers come back with lower-case column names,
as on the other backends. ``?`` placeholders are the connector's ``qmark`` style, bound
by the server. Every statement goes through ``_Session.run``: a failure becomes a
``WarehouseError`` naming the operation and the statement's first line, never the
password.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import dagster as dg
from pydantic import Field

from analytics_assets.warehouse.base import (
    Data,
    ParquetFile,
    Query,
    WarehouseError,
    WarehouseResource,
    as_query,
    check_json_key,
    check_table,
    split_table,
    type_of_value,
)
from analytics_assets.warehouse.types import JSON, Column, JsonField, sql_type, type_of_arrow

if TYPE_CHECKING:
    # The connector is imported on first use: a deployment on DuckDB needs no Snowflake
    # driver (it is the `snowflake` extra).
    import pandas as pd
    import pyarrow as pa
    from snowflake.connector import SnowflakeConnection
    from snowflake.connector.cursor import SnowflakeCursor

# The query string keys a snowflake:// URL may carry, and the resource field each sets.
URL_OPTIONS = ("warehouse", "role")
# Snowflake's column type codes (snowflake.connector.constants.FIELD_TYPES, by index), as
# the SQL type a table created from a query's answer gets.
_TYPE_CODES = {
    1: "DOUBLE",
    2: "VARCHAR",
    3: "DATE",
    4: "TIMESTAMP_NTZ",
    5: "VARIANT",
    6: "TIMESTAMP_TZ",
    7: "TIMESTAMP_TZ",
    8: "TIMESTAMP_NTZ",
    9: "VARIANT",
    10: "VARIANT",
    11: "BINARY",
    12: "TIME",
    13: "BOOLEAN",
}
# Prefix of the session's temporary stages and of load tables (dropped after use).
_TEMP_PREFIX = "_ANALYTICS_ASSETS_"


def _ident(name: str) -> str:
    return '"' + name.upper().replace('"', '""') + '"'


def _table_ident(table: str) -> str:
    schema, name = split_table(table)
    return f"{_ident(schema)}.{_ident(name)}" if schema else _ident(name)


def _string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _literal(value: Any) -> str:
    """A partition value as SQL text, for the one statement that cannot bind it: a COPY's
    transformation."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, datetime):
        kind = "TIMESTAMP_TZ" if value.tzinfo else "TIMESTAMP_NTZ"
        return f"CAST({_string(value.isoformat(sep=' '))} AS {kind})"
    if isinstance(value, date):
        return f"CAST({_string(value.isoformat())} AS DATE)"
    if isinstance(value, int | float):
        return repr(value)
    return _string(str(value))


def _json_field(field: JsonField) -> str:
    """The COPY transformation of one export field: JSON documents kept as VARIANT (a JSON
    null as SQL NULL, as DuckDB's reader gives it), everything else cast."""
    value = '$1:"' + field.source.replace('"', '""') + '"'
    if field.type == JSON:
        return f"STRIP_NULL_VALUE({value})"
    return f"{value}::{sql_type(field.type, 'snowflake')}"


def _value(value: Any) -> Any:
    # NUMBER answers come as Decimal: whole ones as int, the rest as float, as on Postgres.
    if isinstance(value, Decimal):
        return int(value) if value.as_tuple().exponent >= 0 else float(value)
    return value


def _first_line(sql: str) -> str:
    return sql.strip().splitlines()[0] if sql.strip() else ""


def parse_url(url: str) -> dict[str, str]:
    """The connection fields of ``snowflake://user[:password]@account/database[/schema]
    [?warehouse=WH&role=R]`` (account, user, password, database, schema, warehouse,
    role), percent-decoded. Errors name the part that is wrong, never the password."""
    try:
        parts = urlsplit(url)
        account, user, password = parts.hostname, parts.username, parts.password
        port = parts.port
    except ValueError:
        raise ValueError("the snowflake:// URL cannot be parsed") from None
    if port is not None:
        raise ValueError("a snowflake:// URL names an account, not a host and port")
    if parts.scheme.lower() != "snowflake":
        raise ValueError(f"not a snowflake:// URL (scheme {parts.scheme!r})")
    path = [unquote(p) for p in parts.path.split("/") if p]
    if not account or not user or not path or len(path) > 2:
        raise ValueError(
            "a Snowflake URL is snowflake://user:password@account/database[/schema]"
            "[?warehouse=WH&role=R]: the account, user or database is missing"
        )
    options = dict(parse_qsl(parts.query))
    if unknown := sorted(set(options) - set(URL_OPTIONS)):
        raise ValueError(f"unknown snowflake:// URL options {unknown}: use {list(URL_OPTIONS)}")
    fields = {"account": account, "user": unquote(user), "database": path[0]}
    if password:
        fields["password"] = unquote(password)
    if len(path) == 2:
        fields["schema"] = path[1]
    return fields | options


def _resolved(value: Any) -> Any:
    return value.get_value() if isinstance(value, dg.EnvVar) else value


def _connector() -> Any:
    try:
        import snowflake.connector
    except ImportError:  # pragma: no cover - the extra is missing
        raise WarehouseError(
            "the Snowflake warehouse needs snowflake-connector-python: "
            "pip install 'analytics_assets[snowflake]'"
        ) from None
    return snowflake.connector


class _Session:
    """One connection's statements. ``run`` is the only place SQL is sent: it turns any
    failure into a ``WarehouseError`` (and is the seam tests record statements at)."""

    def __init__(self, conn: SnowflakeConnection, what: str, mask: Any) -> None:
        self.conn = conn
        self.what = what
        self._mask = mask

    def run(self, sql: str, params: Sequence[Any] | None = None) -> SnowflakeCursor:
        cursor = self.conn.cursor()
        try:
            cursor.execute(sql, list(params) if params else None)
        except Exception as exc:
            # Whatever the driver raised (an emulator's errors included): the statement failed.
            message = f"{self.what}: {_first_line(sql)}: {type(exc).__name__}: {exc}"
            raise WarehouseError(self._mask(message)) from exc
        return cursor

    def rows(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        cursor = self.run(sql, params)
        names = [d[0].lower() for d in cursor.description or []]
        return [
            dict(zip(names, (_value(v) for v in row), strict=True)) for row in cursor.fetchall()
        ]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.run("BEGIN")
        try:
            yield
        except BaseException:
            self.run("ROLLBACK")
            raise
        self.run("COMMIT")


class SnowflakeWarehouse(WarehouseResource):
    """A Snowflake database as the warehouse; schemas follow the asset key prefixes."""

    backend = "snowflake"

    url: str | None = Field(
        default=None,
        description=(
            "snowflake://user[:password]@account/database[/schema][?warehouse=WH&role=R]: "
            "the fields below in one string (a field that is set wins). Give it as an "
            "EnvVar when it holds a password: the UI then shows the variable's name only."
        ),
    )
    account: str | None = Field(default=None, description="The account identifier (org-account).")
    user: str | None = Field(default=None, description="The user to log in as.")
    password: str | None = Field(default=None, description="The user's password (an EnvVar).")
    database: str | None = Field(default=None, description="The database the tables live in.")
    schema_: str | None = Field(
        default=None,
        alias="schema",
        description="The schema of unqualified table names (tables are schema-qualified).",
    )
    warehouse: str | None = Field(default=None, description="The virtual warehouse to run on.")
    role: str | None = Field(default=None, description="The role to use.")
    login_timeout: int = Field(default=60, description="Seconds to wait for a login.")

    def __repr__(self) -> str:
        # Pydantic's repr would print the password and a URL that may hold one.
        shown = {k: v for k, v in self._settings(check=False).items() if k != "password"}
        return f"SnowflakeWarehouse({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    __str__ = __repr__

    # ----- connections and errors -----------------------------------------------------

    def _settings(self, check: bool = True) -> dict[str, str]:
        """The connection fields: the URL's, overridden by the fields that are set."""
        url = _resolved(self.url)
        try:
            fields = parse_url(url) if url else {}
        except ValueError:
            if check:
                raise
            fields = {}
        own = {
            "account": self.account,
            "user": self.user,
            "password": self.password,
            "database": self.database,
            "schema": self.schema_,
            "warehouse": self.warehouse,
            "role": self.role,
        }
        fields |= {k: v for k, v in ((k, _resolved(v)) for k, v in own.items()) if v}
        if check and (missing := [k for k in ("account", "user", "database") if not fields.get(k)]):
            raise WarehouseError(
                f"the Snowflake warehouse needs {', '.join(missing)}: set the resource's "
                "fields or give a snowflake://user:password@account/database URL"
            )
        return fields

    def describe(self) -> str:
        return f"snowflake {self._where()}"

    def _where(self) -> str:
        # account/database, for messages; never the password.
        settings = self._settings(check=False)
        return f"{settings.get('account', '?')}/{settings.get('database', '?')}"

    def _mask(self, text: str) -> str:
        password = self._settings(check=False).get("password")
        for secret in [password, quote(password, safe="")] if password else []:
            text = text.replace(secret, "***")
        return text

    @contextmanager
    def _session(self, what: str) -> Iterator[_Session]:
        """A short-lived autocommit session in UTC with ``qmark`` placeholders."""
        connector = _connector()
        settings = self._settings()
        where = self._where()
        try:
            conn = connector.connect(
                **settings,
                paramstyle="qmark",
                autocommit=True,
                application="analytics_assets",
                login_timeout=self.login_timeout,
                session_parameters={"TIMEZONE": "UTC"},
            )
        except Exception as exc:
            # No cause attached: a driver error about the login may quote what it was given.
            raise WarehouseError(
                self._mask(
                    f"{what}: cannot connect to the Snowflake warehouse {where}: "
                    f"{type(exc).__name__}: {exc}"
                )
            ) from None
        try:
            yield _Session(conn, what, self._mask)
        finally:
            conn.close()

    # ----- writes ---------------------------------------------------------------------

    def create_table(self, table: str, columns: Sequence[Column]) -> None:
        check_table(table)
        with self._session(f"creating {table}") as session:
            self._ensure(session, table, _declared(columns))

    def replace_partition(
        self,
        table: str,
        data: Data | Sequence[Data],
        partition_column: str,
        partition_value: Any,
        *,
        columns: Sequence[Column] | None = None,
    ) -> int:
        check_table(table)
        items = list(data) if isinstance(data, list | tuple) else [data]
        if not items:
            raise ValueError(f"nothing to write to {table}: no SELECT in the list")
        what = f"replacing {table} where {partition_column} = {partition_value}"
        with self._session(what) as session, tempfile.TemporaryDirectory() as tmp:
            wanted = _declared(columns) if columns else _shape(session, items[0])
            types = self._ensure(session, table, wanted)
            stage = self._stage(session, table)
            # Every source on the stage first: PUT is not part of a transaction.
            loads = [_put(session, stage, i, item, Path(tmp)) for i, item in enumerate(items)]
            with session.transaction():
                session.run(
                    f"DELETE FROM {_table_ident(table)} WHERE {_ident(partition_column)} = ?",
                    [partition_value],
                )
                return sum(_insert(session, table, load, types, columns) for load in loads)

    def replace_table(
        self, table: str, data: Data, *, columns: Sequence[Column] | None = None
    ) -> int:
        check_table(table)
        with self._session(f"replacing {table}") as session, tempfile.TemporaryDirectory() as tmp:
            wanted = _declared(columns) if columns else _shape(session, data)
            schema, name = split_table(table)
            if schema:
                session.run(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)}")
            source, params = _as_select(data, wanted)
            load = None
            if source is None:
                # Rows: loaded into a table of their own, which then replaces the table.
                load = f"{schema}.{_TEMP_PREFIX}{name}_{uuid.uuid4().hex[:12]}".lstrip(".")
                types = self._ensure(session, load, wanted)
                staged = _put(session, self._stage(session, table), 0, data, Path(tmp))
                _insert(session, load, staged, types, columns)
                source, params = f"SELECT * FROM {_table_ident(load)}", []
            try:
                # One statement: readers see the old table or the new one, never none.
                session.run(
                    f"CREATE OR REPLACE TABLE {_table_ident(table)} COPY GRANTS AS {source}",
                    params,
                )
            finally:
                if load:
                    session.run(f"DROP TABLE IF EXISTS {_table_ident(load)}")
            return int(session.rows(f"SELECT count(*) AS n FROM {_table_ident(table)}")[0]["n"])

    def append(self, table: str, data: Data, *, columns: Sequence[Column] | None = None) -> int:
        check_table(table)
        what = f"appending to {table}"
        with self._session(what) as session, tempfile.TemporaryDirectory() as tmp:
            wanted = _declared(columns) if columns else _shape(session, data)
            types = self._ensure(session, table, wanted)
            load = _put(session, self._stage(session, table), 0, data, Path(tmp))
            return _insert(session, table, load, types, columns)

    def load_json_lines(
        self,
        table: str,
        files: Sequence[Path],
        fields: Sequence[JsonField],
        partition_column: str,
        partition_value: Any,
    ) -> int:
        """PUT the gzipped files (as they are) on a temporary stage, then, in one
        transaction, delete the partition and ``COPY INTO`` it with a JSON file format,
        selecting each field's key (see the module's docstring)."""
        check_table(table)
        for f in fields:
            check_json_key(f.name)
        declared = [Column(partition_column, type_of_value(partition_value))]
        declared += [Column(f.name, f.type) for f in fields]
        what = f"loading {len(files)} JSON-lines files into {table}"
        with self._session(what) as session:
            self._ensure(session, table, _declared(declared))
            stage = self._stage(session, table) if files else ""
            for i, path in enumerate(files):
                # A folder per file: two days' files may share a name.
                session.run(
                    f"PUT {_string('file://' + Path(path).resolve().as_posix())} @{stage}/{i}/ "
                    "AUTO_COMPRESS = FALSE SOURCE_COMPRESSION = GZIP OVERWRITE = TRUE"
                )
            with session.transaction():
                session.run(
                    f"DELETE FROM {_table_ident(table)} WHERE {_ident(partition_column)} = ?",
                    [partition_value],
                )
                if not files:
                    return 0
                target = ", ".join(_ident(c.name) for c in declared)
                picked = ", ".join([_literal(partition_value), *map(_json_field, fields)])
                return _copied(
                    session.run(
                        f"COPY INTO {_table_ident(table)} ({target}) "
                        f"FROM (SELECT {picked} FROM @{stage}/) "
                        "FILE_FORMAT = (TYPE = JSON COMPRESSION = GZIP) "
                        "ON_ERROR = ABORT_STATEMENT FORCE = TRUE"
                    )
                )

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        with self._session("executing a statement") as session:
            session.run(sql, params)

    # ----- reads ----------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        import pandas as pd

        with self._session("running a query") as session:
            cursor = session.run(sql, params)
            names = [d[0].lower() for d in cursor.description or []]
            rows = [[_value(v) for v in row] for row in cursor.fetchall()]
        return pd.DataFrame.from_records(rows, columns=names)

    def records(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        with self._session("running a query") as session:
            return session.rows(sql, params)

    def table_exists(self, table: str) -> bool:
        with self._session(f"looking up {table}") as session:
            return bool(_described(session, table))

    def columns(self, table: str) -> list[tuple[str, str]]:
        with self._session(f"describing {table}") as session:
            return [(name.lower(), typ) for name, typ in _described(session, table)]

    def tables(self) -> list[str]:
        with self._session("listing tables") as session:
            # Sorted once lower-cased: upper case sorts '_' after letters, lower case before.
            return sorted(
                f"{r['table_schema']}.{r['table_name']}".lower()
                for r in session.rows(
                    "SELECT table_schema, table_name FROM information_schema.tables "
                    "WHERE table_type = 'BASE TABLE' AND table_schema <> 'INFORMATION_SCHEMA'"
                )
            )

    def json_text(self, column: str, key: str) -> str:
        check_json_key(key)
        # TO_VARCHAR: the column may be text or VARIANT; PARSE_JSON reads either's text.
        return f'TO_JSON(PARSE_JSON(TO_VARCHAR({column})):"{key}")'

    def json_as_text(self, column: str) -> str:
        # TO_JSON, not a cast: a VARIANT holding a string casts to the bare string.
        return f"TO_JSON({column})"

    def row_hash(self, columns: Sequence[str]) -> str:
        return f"HASH({', '.join(columns)})"

    # ----- helpers --------------------------------------------------------------------

    def _stage(self, session: _Session, table: str) -> str:
        """A temporary stage in the table's schema, gone when the session ends."""
        schema, _ = split_table(table)
        name = _ident(f"{_TEMP_PREFIX}{uuid.uuid4().hex[:12]}")
        stage = f"{_ident(schema)}.{name}" if schema else name
        session.run(f"CREATE TEMPORARY STAGE {stage}")
        return stage

    def _ensure(
        self,
        session: _Session,
        table: str,
        wanted: list[tuple[str, str]],
    ) -> dict[str, str]:
        """Create the table (and schema) or add the columns it lacks; returns the table's
        ``{NAME: Snowflake type}``. DDL commits, so this runs before any transaction."""
        schema, _ = split_table(table)
        if schema:
            session.run(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)}")
        listed = ", ".join(f"{_ident(n)} {t}" for n, t in wanted)
        session.run(f"CREATE TABLE IF NOT EXISTS {_table_ident(table)} ({listed})")
        existing = dict(_described(session, table))
        for name, typ in wanted:
            if name.upper() not in existing:
                # IF NOT EXISTS: a parallel step may have added it since the lookup.
                session.run(
                    f"ALTER TABLE {_table_ident(table)} "
                    f"ADD COLUMN IF NOT EXISTS {_ident(name)} {typ}"
                )
                existing[name.upper()] = typ
        return existing


# ----- module helpers ---------------------------------------------------------------------


def _declared(columns: Sequence[Column]) -> list[tuple[str, str]]:
    return [(c.name, sql_type(c.type, "snowflake")) for c in columns]


def _described(session: _Session, table: str) -> list[tuple[str, str]]:
    """(NAME, Snowflake type) of each column of ``table``, in order; none if it is absent."""
    schema, name = split_table(table)
    where = "table_schema = ?" if schema else "table_schema = CURRENT_SCHEMA()"
    params = [name.upper(), schema.upper()] if schema else [name.upper()]
    return [
        (str(r["column_name"]), str(r["data_type"]))
        for r in session.rows(
            "SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE table_name = ? AND {where} ORDER BY ordinal_position",
            params,
        )
    ]


def _shape(session: _Session, data: Data) -> list[tuple[str, str]]:
    """(name, Snowflake type) of each column the data brings, for a table created without
    declared columns."""
    if isinstance(data, str | Query):
        query = as_query(data)
        cursor = session.run(f"SELECT * FROM ({query.sql}) AS q LIMIT 0", query.params)
        shape = []
        for d in cursor.description or []:
            typ = _TYPE_CODES.get(d[1]) or f"NUMBER({d[4] or 38}, {d[5] or 0})"
            shape.append((d[0].lower(), typ))
        return shape
    return [(f.name, sql_type(type_of_arrow(f.type), "snowflake")) for f in _arrow_schema(data)]


def _arrow_schema(data: Data) -> pa.Schema:
    if isinstance(data, ParquetFile):
        import pyarrow.parquet as pq

        return pq.read_schema(data.path)
    return _arrow_table(data).schema


def _arrow_table(data: Data) -> pa.Table:
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data
    # A pandas frame (what the checks' tests and small writes hand over).
    return pa.Table.from_pandas(data, preserve_index=False)


def _as_select(data: Data, wanted: list[tuple[str, str]]) -> tuple[str | None, list[Any]]:
    """A query source as the SELECT that fills a new table with the declared types; rows
    give ``None`` (they are loaded first)."""
    if not isinstance(data, str | Query):
        return None, []
    query = as_query(data)
    picked = ", ".join(
        f"{_cast(_ident(n), t)} AS {_ident(n)}" if t else _ident(n) for n, t in wanted
    )
    return f"SELECT {picked} FROM ({query.sql}) AS q", list(query.params)


def _cast(value: str, typ: str) -> str:
    # JSON text (or a VARIANT) as a document, anything else cast to the declared type.
    return f"PARSE_JSON(TO_VARCHAR({value}))" if typ == "VARIANT" else f"CAST({value} AS {typ})"


def _put(session: _Session, stage: str, index: int, data: Data, tmp: Path) -> Any:
    """Rows onto the stage as one Parquet file (in a folder of their own); a query stays
    as it is. Returns what ``_insert`` loads: the stage folder, or the query."""
    if isinstance(data, str | Query):
        return data
    if isinstance(data, ParquetFile):
        path = Path(data.path)
    else:
        import pyarrow.parquet as pq

        path = tmp / f"rows-{index}.parquet"
        pq.write_table(_arrow_table(data), path, compression="zstd")
    session.run(
        f"PUT {_string('file://' + path.resolve().as_posix())} @{stage}/{index}/ "
        "AUTO_COMPRESS = FALSE OVERWRITE = TRUE"
    )
    return _StagedRows(f"@{stage}/{index}/", [f.name for f in _arrow_schema(data)])


class _StagedRows:
    """A Parquet file on a stage: its folder and its column names."""

    def __init__(self, location: str, names: list[str]) -> None:
        self.location = location
        self.names = names


def _insert(
    session: _Session,
    table: str,
    load: Any,
    types: dict[str, str],
    columns: Sequence[Column] | None,
) -> int:
    """Insert one source into ``table`` (in the caller's transaction, if any)."""
    if isinstance(load, _StagedRows):
        names = load.names
        picked = ", ".join(
            # JSON text into a document; every other value converted by COPY itself, as
            # write_pandas relies on.
            f'PARSE_JSON($1:"{n}"::VARCHAR)' if types.get(n.upper()) == "VARIANT" else f'$1:"{n}"'
            for n in names
        )
        return _copied(
            session.run(
                f"COPY INTO {_table_ident(table)} ({', '.join(_ident(n) for n in names)}) "
                f"FROM (SELECT {picked} FROM {load.location}) "
                "FILE_FORMAT = (TYPE = PARQUET USE_LOGICAL_TYPE = TRUE) "
                "ON_ERROR = ABORT_STATEMENT FORCE = TRUE"
            )
        )
    query = as_query(load)
    if columns:
        names = [c.name for c in columns]
    else:
        described = session.run(f"SELECT * FROM ({query.sql}) AS q LIMIT 0", query.params)
        names = [d[0].lower() for d in described.description or []]
    picked = ", ".join(
        _cast(_ident(n), "VARIANT") if types.get(n.upper()) == "VARIANT" else _ident(n)
        for n in names
    )
    cursor = session.run(
        f"INSERT INTO {_table_ident(table)} ({', '.join(_ident(n) for n in names)}) "
        f"SELECT {picked} FROM ({query.sql}) AS q",
        query.params,
    )
    return max(cursor.rowcount or 0, 0)


def _copied(cursor: SnowflakeCursor) -> int:
    """Rows a COPY loaded, from its answer (one row per file); a file that was not
    loaded whole is an error, never a short table."""
    names = [d[0].lower() for d in cursor.description or []]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    if "rows_loaded" not in names:
        return 0  # no files matched: "Copy executed with 0 files processed."
    failed = [r for r in rows if str(r.get("status", "")).upper() != "LOADED"]
    if failed:
        raise WarehouseError(
            f"COPY did not load {len(failed)} files: "
            + "; ".join(
                f"{r.get('file')}: {r.get('status')} {r.get('first_error')}" for r in failed
            )
        )
    return sum(int(r["rows_loaded"]) for r in rows)
