// The snapshot store's state as /readyz, /metrics and logs report it.

/// A point-in-time view of the store's connection and snapshot.
public struct StoreStatus: Sendable, Equatable {
    /// Whether the background connection is open and listening.
    public var connected: Bool
    /// Seconds since the current snapshot was read; nil before the first load.
    public var snapshotAge: Double?
    /// Row counts of the current snapshot.
    public var counts: SnapshotCounts
    /// The last connection, query or schema error, password removed; nil after a successful load.
    public var lastError: String?
    /// The schema version read from the database; nil until read.
    public var schemaVersion: Int?
    /// The schema version this build needs.
    public var expectedSchemaVersion: Int
    /// Snapshot loads that succeeded since start.
    public var loads: Int
    /// Connections opened since start; above 1 means the store reconnected.
    public var connects: Int
    /// Connection, query and schema errors since start. Unlike `lastError`, a later successful
    /// load does not reset it.
    public var failures: Int

    public init(
        connected: Bool = false, snapshotAge: Double? = nil, counts: SnapshotCounts = .init(),
        lastError: String? = nil, schemaVersion: Int? = nil,
        expectedSchemaVersion: Int = SchemaCheck.expectedVersion, loads: Int = 0, connects: Int = 0,
        failures: Int = 0
    ) {
        self.connected = connected
        self.snapshotAge = snapshotAge
        self.counts = counts
        self.lastError = lastError
        self.schemaVersion = schemaVersion
        self.expectedSchemaVersion = expectedSchemaVersion
        self.loads = loads
        self.connects = connects
        self.failures = failures
    }
}
