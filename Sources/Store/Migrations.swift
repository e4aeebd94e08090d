// The database schema as numbered migrations embedded in the binary. Each
// runs in its own transaction under a transaction-level advisory lock, and
// records its version in schema_migrations, so concurrent `mailcloakctl
// migrate` runs wait for each other and a second run changes nothing.

/// One schema change. Versions start at 1 and increase by one.
package struct Migration: Sendable {
    package let version: Int
    package let name: String
    package let sql: String
}

package enum Migrations {
    /// Key of the advisory lock that serializes migrations ("mailcloa" in ASCII).
    static let advisoryLockKey: Int64 = 0x6d61_696c_636c_6f61

    /// The schema version this build reads and writes.
    package static var latestVersion: Int { all.last?.version ?? 0 }

    package static let all: [Migration] = [
        Migration(version: 1, name: "domains, aliases, apps and app senders", sql: initialSchema),
    ]

    /// Returns the highest applied version, 0 when schema_migrations does not exist.
    package static func currentVersion(_ connection: PostgresConnection) throws(StoreError) -> Int {
        // The table name is resolved when a statement is parsed, so check for it first.
        let table = try connection.execute("SELECT to_regclass('schema_migrations') IS NOT NULL AS present")
        guard try table.bool(0, "present") else { return 0 }
        let rows = try connection.execute("SELECT coalesce(max(version), 0) AS version FROM schema_migrations")
        return try rows.int(0, "version")
    }

    /// Applies every migration newer than the database, one transaction each.
    /// - Returns: the migrations applied by this call (empty when up to date).
    package static func migrate(_ connection: PostgresConnection) throws(StoreError) -> [Migration] {
        var applied: [Migration] = []
        for migration in all {
            let didApply = try connection.transaction { () throws(StoreError) -> Bool in
                try connection.execute("SELECT pg_advisory_xact_lock($1)", [String(advisoryLockKey)])
                try connection.execute("""
                    CREATE TABLE IF NOT EXISTS schema_migrations (
                        version integer PRIMARY KEY,
                        applied_at timestamptz NOT NULL DEFAULT now()
                    )
                    """)
                let existing = try connection.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = $1", [String(migration.version)])
                guard existing.count == 0 else { return false }
                try connection.execute(migration.sql)
                try connection.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)", [String(migration.version)])
                return true
            }
            if didApply { applied.append(migration) }
        }
        return applied
    }

    static let initialSchema = """
        CREATE TABLE domains (
            name text PRIMARY KEY CHECK (name <> '' AND name = lower(name) AND position('@' IN name) = 0),
            enabled boolean NOT NULL DEFAULT true,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );

        -- domain is derived from the address (after its last @), so an alias
        -- can only exist in a domain listed in domains.
        CREATE TABLE aliases (
            address text PRIMARY KEY CHECK (address = lower(address) AND address ~ '^.+@[^@]+$'),
            domain text GENERATED ALWAYS AS (substring(address FROM '@([^@]+)$')) STORED
                REFERENCES domains (name) ON DELETE RESTRICT,
            username text NOT NULL CHECK (username <> ''),
            enabled boolean NOT NULL DEFAULT true,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX aliases_username_idx ON aliases (username);
        CREATE INDEX aliases_domain_idx ON aliases (domain);

        CREATE TABLE apps (
            id text PRIMARY KEY CHECK (id <> '' AND id = lower(id)),
            secret_hash text NOT NULL CHECK (secret_hash <> ''),
            enabled boolean NOT NULL DEFAULT true,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE app_senders (
            app_id text NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
            address text NOT NULL CHECK (address = lower(address) AND address ~ '^.+@[^@]+$'),
            enabled boolean NOT NULL DEFAULT true,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (app_id, address)
        );
        CREATE INDEX app_senders_address_idx ON app_senders (address);

        -- An UPDATE that does not set updated_at itself gets the current time.
        CREATE FUNCTION mailcloak_touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
                NEW.updated_at := now();
            END IF;
            RETURN NEW;
        END
        $$;

        -- Daemons LISTEN on mailcloak_changed and reload their snapshot. The
        -- payload is the table name; PostgreSQL folds equal notifications
        -- of one transaction into one.
        CREATE FUNCTION mailcloak_notify_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('mailcloak_changed', TG_TABLE_NAME);
            RETURN NULL;
        END
        $$;

        CREATE TRIGGER domains_touch BEFORE UPDATE ON domains
            FOR EACH ROW EXECUTE FUNCTION mailcloak_touch_updated_at();
        CREATE TRIGGER aliases_touch BEFORE UPDATE ON aliases
            FOR EACH ROW EXECUTE FUNCTION mailcloak_touch_updated_at();
        CREATE TRIGGER apps_touch BEFORE UPDATE ON apps
            FOR EACH ROW EXECUTE FUNCTION mailcloak_touch_updated_at();
        CREATE TRIGGER app_senders_touch BEFORE UPDATE ON app_senders
            FOR EACH ROW EXECUTE FUNCTION mailcloak_touch_updated_at();

        CREATE TRIGGER domains_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON domains
            FOR EACH STATEMENT EXECUTE FUNCTION mailcloak_notify_changed();
        CREATE TRIGGER aliases_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON aliases
            FOR EACH STATEMENT EXECUTE FUNCTION mailcloak_notify_changed();
        CREATE TRIGGER apps_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON apps
            FOR EACH STATEMENT EXECUTE FUNCTION mailcloak_notify_changed();
        CREATE TRIGGER app_senders_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON app_senders
            FOR EACH STATEMENT EXECUTE FUNCTION mailcloak_notify_changed();
        """
}
