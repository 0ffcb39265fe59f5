"""The warehouse: the interface assets write through (``base.WarehouseResource``), its
backends (``duckdb``, the embedded default; ``postgres``), bulk loaders, column types and
the asset checks that read it. ``base.warehouse_from_url`` picks a backend from a DuckDB
path or a server URL. Nothing here is imported until used: a backend's driver loads with
the backend."""
