"""The store's schema and its migrations; the only DDL in the project.

Version 0 is the npm reference's schema as its 1.3.2 release creates it (it
never sets `user_version`). Each entry of `MIGRATIONS` takes the store from
version *i* to *i + 1* and runs inside one `BEGIN IMMEDIATE` transaction, so
several processes opening the same file at once migrate it exactly once.
Never edit a shipped step; append a new one.
"""

from __future__ import annotations

from collections.abc import Callable

import apsw

from ..errors import SchemaTooNew

# The reference's own tables, verbatim in substance, so a store either program
# created is the same file.
_REFERENCE_TABLES = """
CREATE TABLE IF NOT EXISTS organizations (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT
);
CREATE TABLE IF NOT EXISTS users (
  id TEXT PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  org_id TEXT NOT NULL,
  role TEXT NOT NULL DEFAULT 'member',
  created_at TEXT NOT NULL,
  updated_at TEXT,
  FOREIGN KEY (org_id) REFERENCES organizations(id)
);
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY,
  key_prefix TEXT NOT NULL,
  key_hash TEXT NOT NULL UNIQUE,
  user_id TEXT NOT NULL,
  name TEXT NOT NULL,
  created_at TEXT NOT NULL,
  expires_at TEXT,
  last_used_at TEXT,
  FOREIGN KEY (user_id) REFERENCES users(id)
);
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'active',
  created_at TEXT NOT NULL,
  updated_at TEXT,
  project_id TEXT,
  metadata TEXT,
  user_id TEXT,
  FOREIGN KEY (user_id) REFERENCES users(id)
);
CREATE TABLE IF NOT EXISTS annotations (
  id TEXT PRIMARY KEY,
  session_id TEXT NOT NULL,
  x REAL NOT NULL,
  y REAL NOT NULL,
  comment TEXT NOT NULL,
  element TEXT NOT NULL,
  element_path TEXT NOT NULL,
  timestamp INTEGER NOT NULL,
  selected_text TEXT,
  bounding_box TEXT,
  nearby_text TEXT,
  css_classes TEXT,
  nearby_elements TEXT,
  computed_styles TEXT,
  full_path TEXT,
  accessibility TEXT,
  is_multi_select INTEGER DEFAULT 0,
  is_fixed INTEGER DEFAULT 0,
  react_components TEXT,
  source_file TEXT,
  url TEXT,
  intent TEXT,
  severity TEXT,
  status TEXT DEFAULT 'pending',
  thread TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT,
  resolved_at TEXT,
  resolved_by TEXT,
  author_id TEXT,
  FOREIGN KEY (session_id) REFERENCES sessions(id)
);
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  type TEXT NOT NULL,
  timestamp TEXT NOT NULL,
  session_id TEXT NOT NULL,
  sequence INTEGER NOT NULL UNIQUE,
  payload TEXT NOT NULL,
  user_id TEXT,
  FOREIGN KEY (user_id) REFERENCES users(id)
);
CREATE INDEX IF NOT EXISTS idx_users_org ON users(org_id);
CREATE INDEX IF NOT EXISTS idx_users_email ON users(email);
CREATE INDEX IF NOT EXISTS idx_api_keys_user ON api_keys(user_id);
CREATE INDEX IF NOT EXISTS idx_api_keys_hash ON api_keys(key_hash);
CREATE INDEX IF NOT EXISTS idx_sessions_user ON sessions(user_id);
CREATE INDEX IF NOT EXISTS idx_annotations_session ON annotations(session_id);
CREATE INDEX IF NOT EXISTS idx_events_session_seq ON events(session_id, sequence);
CREATE INDEX IF NOT EXISTS idx_events_user ON events(user_id);
CREATE TABLE IF NOT EXISTS event_sequence (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  value INTEGER NOT NULL
);
"""

# Columns later reference releases added to `annotations`; a store written by
# an older release may lack them.
_LATER_ANNOTATION_COLUMNS = (
    ("kind", "TEXT DEFAULT 'feedback'"),
    ("extra", "TEXT"),
    ("source_file", "TEXT"),
)


def _adopt_reference_schema(conn: apsw.Connection) -> None:
    """Version 0 -> 1: make sure every reference table, column and the sequence row exist."""
    conn.execute(_REFERENCE_TABLES)
    present = {row[1] for row in conn.execute("PRAGMA table_info(annotations)")}
    for name, decl in _LATER_ANNOTATION_COLUMNS:
        if name not in present:
            conn.execute(f"ALTER TABLE annotations ADD COLUMN {name} {decl}")
    conn.execute(
        "INSERT OR IGNORE INTO event_sequence (id, value) VALUES (1, (SELECT COALESCE(MAX(sequence), 0) FROM events))"
    )


def _index_pending(conn: apsw.Connection) -> None:
    """Version 1 -> 2: the pending lists filter on status."""
    conn.execute("CREATE INDEX IF NOT EXISTS idx_annotations_status ON annotations(status, session_id)")


def _index_reads(conn: apsw.Connection) -> None:
    """Version 2 -> 3: every per-request query reads in index order, whatever the store's size.

    A session's annotations and its pending ones come sorted by timestamp,
    sessions newest first, and pruning finds old events without a scan.
    """
    conn.execute(
        "CREATE INDEX IF NOT EXISTS idx_annotations_session_time ON annotations(session_id, timestamp);"
        "CREATE INDEX IF NOT EXISTS idx_annotations_session_status_time ON annotations(session_id, status, timestamp);"
        "CREATE INDEX IF NOT EXISTS idx_sessions_created ON sessions(created_at);"
        "CREATE INDEX IF NOT EXISTS idx_events_timestamp ON events(timestamp);"
    )


def _presence_tables(conn: apsw.Connection) -> None:
    """Version 3 -> 4: presence, tables of our own beside the reference's (see `presence`).

    Rows of a process live as long as its heartbeat (`beat_at`, seconds since
    the epoch); a page's last sighting and a refused origin outlive it.
    """
    conn.execute(
        """
CREATE TABLE IF NOT EXISTS presence_processes (
  instance TEXT PRIMARY KEY,
  pid INTEGER NOT NULL,
  host TEXT NOT NULL,
  version TEXT NOT NULL,
  started_at TEXT NOT NULL,
  owns_port INTEGER NOT NULL DEFAULT 0,
  port INTEGER,
  detail TEXT,
  beat_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS presence_agents (
  id TEXT PRIMARY KEY,
  instance TEXT NOT NULL,
  client_name TEXT,
  client_version TEXT,
  transport TEXT NOT NULL,
  connected_at TEXT NOT NULL,
  last_call_at TEXT,
  watching INTEGER NOT NULL DEFAULT 0,
  watching_session_id TEXT
);
CREATE INDEX IF NOT EXISTS idx_presence_agents_instance ON presence_agents(instance);
CREATE TABLE IF NOT EXISTS presence_pages (
  id TEXT PRIMARY KEY,
  instance TEXT NOT NULL,
  session_id TEXT,
  url TEXT,
  connected_at TEXT NOT NULL,
  last_seen_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_presence_pages_instance ON presence_pages(instance);
CREATE TABLE IF NOT EXISTS presence_pages_seen (
  url TEXT PRIMARY KEY,
  session_id TEXT,
  last_seen_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS presence_refused_origins (
  origin TEXT PRIMARY KEY,
  instance TEXT NOT NULL,
  path TEXT NOT NULL,
  count INTEGER NOT NULL,
  last_at TEXT NOT NULL
);
"""
    )


MIGRATIONS: tuple[Callable[[apsw.Connection], None], ...] = (
    _adopt_reference_schema,
    _index_pending,
    _index_reads,
    _presence_tables,
)
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: apsw.Connection) -> int:
    value = conn.execute("PRAGMA user_version").get
    return int(value) if isinstance(value, int) else 0


def migrate(conn: apsw.Connection) -> int:
    """Bring the store up to `SCHEMA_VERSION`; returns the version it found.

    Raises `SchemaTooNew` for a store written by a newer version of this program.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = schema_version(conn)
        if found > SCHEMA_VERSION:
            raise SchemaTooNew(found, SCHEMA_VERSION)
        for version in range(found, SCHEMA_VERSION):
            MIGRATIONS[version](conn)
            conn.execute(f"PRAGMA user_version = {version + 1}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return found
