"""The store: the SQLite file, its schema, reads, the one writer task and the hub fed after each commit.

The only package that imports `apsw`. It imports the top level and nothing else of ours.
"""
