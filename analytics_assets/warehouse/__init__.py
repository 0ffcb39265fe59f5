"""The warehouse: the resource assets write through, its bulk loaders, column types and
the asset checks that read it."""
